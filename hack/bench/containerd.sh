# Starts and stops a private containerd (Debian's, with its CRI plugin) for side-by-side
# benchmarks. Source this file, then:
#   containerd_start DIR REGISTRY CNI_CONF_DIR   # REGISTRY = host:port of the loopback registry
#   containerd_stop DIR
# The CRI socket is DIR/containerd.sock; drive it with `criox ctl --endpoint`.
#
# Settings this machine needs: cgroupfs (no systemd), restrict_oom_score_adj (no
# CAP_SYS_RESOURCE, so runc cannot lower the pause container's oom_score_adj), a pause
# image from the loopback registry, and that registry as a plain-HTTP host in certs.d.

containerd_start() {
  local dir=$1 registry=$2 cni_conf=$3
  mkdir -p "$dir"/{root,state,opt,certs.d/"$registry"}
  cat > "$dir/certs.d/$registry/hosts.toml" <<HOSTS
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
HOSTS
  cat > "$dir/config.toml" <<CONFIG
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$registry/pause:latest"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni_conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
CONFIG
  containerd --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  local i
  for i in $(seq 1 100); do
    [ -S "$dir/containerd.sock" ] && return 0
    sleep 0.1
  done
  echo "containerd did not start; see $dir/containerd.log" >&2
  return 1
}

containerd_stop() {
  local dir=$1
  [ -f "$dir/containerd.pid" ] || return 0
  local pid
  pid=$(cat "$dir/containerd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/containerd.pid"
  # Shims outlive containerd by design; stop the ones that serve this instance.
  pkill -f "containerd-shim-runc-v2 .*-address $dir/containerd.sock" 2>/dev/null || true
  grep " $dir/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
