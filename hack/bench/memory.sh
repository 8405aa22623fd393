# Sourced by the benchmarks: the memory of processes, summed over the PIDs given, in KiB.
# A process that has gone counts 0.

# Resident set (VmRSS): every page a process maps counts in full, shared or not.
rss_kb() { sum_kb VmRSS status "$@"; }

# Proportional set size: a page shared by N processes counts 1/N in each, so the sum over
# a group of processes counts each page once.
pss_kb() { sum_kb Pss smaps_rollup "$@"; }

sum_kb() { # FIELD PROC_FILE PID...
  local field=$1 file=$2 total=0 pid v
  shift 2
  for pid in "$@"; do
    v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/$file" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
