//! Hostile images, registries and references: each must end in a clear error, with the
//! daemon still answering and nothing requested that the reference did not name.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use criox_proto::v1::*;
use criox_testkit::{ACCEPT_ANYTHING, Daemon, fixtures, insecure_registries, unique};
use sha2::{Digest, Sha256};
use tonic::Code;

/// A daemon that pulls from `registries` over plain HTTP and trusts every image.
async fn daemon(registries: &[&str]) -> Daemon {
    Daemon::builder()
        .images(&insecure_registries(registries), ACCEPT_ANYTHING, "")
        .start()
        .await
}

async fn image_count(daemon: &Daemon) -> usize {
    daemon.list_images().await.len()
}

/// One HTTP/1.1 exchange with the registry: status, headers (lowercase names), body.
fn http(
    registry: &str,
    method: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(registry).unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {registry}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    (status, headers, rest)
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Pushes a blob to `repo` the way the distribution API wants it.
fn push_blob(registry: &str, repo: &str, data: &[u8]) -> String {
    let d = digest(data);
    let (status, headers, _) = http(
        registry,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        "application/octet-stream",
        b"",
    );
    assert_eq!(status, 202, "starting an upload");
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .unwrap();
    let path = match location.find("/v2/") {
        Some(i) => location[i..].to_string(),
        None => location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, _, body) = http(
        registry,
        "PUT",
        &format!("{path}{sep}digest={d}"),
        "application/octet-stream",
        data,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    d
}

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Pushes an image of the given (media type, blob) layers, with `diff_ids` in its config,
/// and returns its reference.
fn push_image(
    registry: &str,
    repo: &str,
    layers: &[(&str, &[u8])],
    diff_ids: &[String],
    user: &str,
) -> String {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "User": user},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = push_blob(registry, repo, config.as_bytes());
    let mut pushed: Vec<String> = Vec::new();
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|(media, data)| {
            let d = digest(data);
            if !pushed.contains(&d) {
                push_blob(registry, repo, data);
                pushed.push(d.clone());
            }
            serde_json::json!({"mediaType": media, "digest": d, "size": data.len()})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descriptors,
    })
    .to_string();
    let (status, _, body) = http(
        registry,
        "PUT",
        &format!("/v2/{repo}/manifests/latest"),
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    format!("{registry}/{repo}:latest")
}

fn tar_of_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn a_layer_claiming_a_giant_pax_header_fails_without_exhausting_memory() {
    let registry = fixtures()["CRIOX_TEST_REGISTRY"].clone();
    let repo = format!("criox/{}", unique("paxbomb"));
    // A PAX header of 4 GiB, really there: zstd shrinks the zeros to a few hundred KiB.
    const CLAIMED: u64 = 4 << 30;
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/bomb").unwrap();
    h.set_size(CLAIMED);
    h.set_mode(0o644);
    h.set_cksum();
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(CLAIMED >> 20) {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.write_all(&tar_of_one_file("after", b"x")).unwrap();
    let layer = encoder.finish().unwrap();
    assert!(layer.len() < 8 << 20, "the bomb is {} bytes", layer.len());
    // The diff id is never reached: the header is refused first.
    let image = push_image(
        &registry,
        &repo,
        &[(LAYER_ZSTD, &layer)],
        &[format!("sha256:{}", "0".repeat(64))],
        "",
    );

    let daemon = daemon(&[&registry]).await;
    let started = std::time::Instant::now();
    let e = daemon.pull(&image).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(
        e.message()
            .contains("a PAX header of 4294967296 bytes, more than the 1048576 allowed"),
        "{e}"
    );
    assert!(e.message().contains(&image), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refusing took {:?}",
        started.elapsed()
    );
    assert_eq!(image_count(&daemon).await, 0);
}

#[tokio::test]
async fn an_image_of_more_than_128_layers_is_refused() {
    let registry = fixtures()["CRIOX_TEST_REGISTRY"].clone();
    let repo = format!("criox/{}", unique("layers129"));
    let tar = tar_of_one_file("f", b"x");
    let layer = gzip(&tar);
    let layers: Vec<(&str, &[u8])> = (0..129).map(|_| (LAYER_GZIP, &layer[..])).collect();
    let diff_ids: Vec<String> = (0..129).map(|_| digest(&tar)).collect();
    let image = push_image(&registry, &repo, &layers, &diff_ids, "");

    let daemon = daemon(&[&registry]).await;
    let e = daemon.pull(&image).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(
        e.message()
            .contains("the manifest has 129 layers, more than the 128 allowed"),
        "{e}"
    );
    assert!(
        std::fs::read_dir(daemon.root.join("storage/layers"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "layers of a refused image were unpacked"
    );
}

/// A registry that answers each request with `answer(path)` and records every path it was
/// asked for, with whether the request carried credentials.
struct FakeRegistry {
    addr: String,
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

const REDIRECT_TO_OTHER_REPO: &str = "HTTP/1.1 307 Temporary Redirect\r\n\
    Location: /v2/other/secret/manifests/latest\r\n\
    Content-Length: 0\r\nConnection: close\r\n\r\n";
const ASK_FOR_BASIC_AUTH: &str = "HTTP/1.1 401 Unauthorized\r\n\
    WWW-Authenticate: Basic realm=\"fake\"\r\n\
    Content-Length: 0\r\nConnection: close\r\n\r\n";
const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

impl FakeRegistry {
    fn start(manifest_answer: &'static str) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let path = request.split(' ').nth(1).unwrap_or("").to_string();
                let mut authorized = false;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    authorized |= line.to_ascii_lowercase().starts_with("authorization:");
                    line.clear();
                }
                log.lock().unwrap().push((path.clone(), authorized));
                let answer = if path.contains("/manifests/") {
                    manifest_answer
                } else {
                    NOT_FOUND
                };
                let _ = (&stream).write_all(answer.as_bytes());
            }
        });
        FakeRegistry { addr, seen }
    }

    fn seen(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_manifest_redirect_to_another_repository_is_not_followed() {
    let hostile = FakeRegistry::start(REDIRECT_TO_OTHER_REPO);
    let daemon = daemon(&[&hostile.addr]).await;
    let image = format!("{}/team/app:latest", hostile.addr);
    let e = daemon.pull(&image).await.unwrap_err();
    assert!(
        e.message()
            .contains("redirect to \"/v2/other/secret/manifests/latest\" refused: it leads to another repository"),
        "{e}"
    );
    let seen = hostile.seen();
    assert!(
        seen.iter().all(|(p, _)| !p.contains("/other/")),
        "the redirect was followed: {seen:?}"
    );
    assert_eq!(image_count(&daemon).await, 0);
}

#[tokio::test]
async fn references_that_climb_out_of_the_repository_are_invalid_arguments() {
    let hostile = FakeRegistry::start(NOT_FOUND);
    let daemon = daemon(&[&hostile.addr]).await;
    let reg = &hostile.addr;
    for image in [
        format!("{reg}/a/../../../v2/_catalog"),
        format!("{reg}/trusted/../evil/app"),
        format!("{reg}/./app"),
        format!("{reg}/app/."),
        format!("{reg}/app:.hidden"),
    ] {
        let e = daemon.pull(&image).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{image}: {e}");
        assert!(
            e.message()
                .starts_with("image.image: invalid image reference"),
            "{image}: {e}"
        );
    }
    assert!(
        hostile.seen().is_empty(),
        "the registry was asked: {:?}",
        hostile.seen()
    );
}

#[tokio::test]
async fn a_corrupt_image_record_does_not_stop_the_daemon() {
    let fx = fixtures();
    let registry = fx["CRIOX_TEST_REGISTRY"].clone();
    let mut daemon = daemon(&[&registry]).await;
    let good = daemon.pull(&fx["CRIOX_TEST_IMAGE_BUSYBOX"]).await.unwrap();
    daemon.stop();
    let records = daemon.root.join("images/records");
    std::fs::write(
        records.join(format!("{}.json", "e".repeat(64))),
        b"{\"id\": [1, 2",
    )
    .unwrap();
    daemon.spawn().await;
    let images = daemon.list_images().await;
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec![good.as_str()]);
    assert!(
        daemon.log().contains("skipping unreadable image record"),
        "{}",
        daemon.log()
    );
}

#[tokio::test]
async fn credentials_go_to_the_image_registry_and_never_to_its_mirror() {
    let own = FakeRegistry::start(ASK_FOR_BASIC_AUTH);
    let mirror = FakeRegistry::start(ASK_FOR_BASIC_AUTH);
    let registries = format!(
        "[[registry]]\nlocation = \"{}\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
        own.addr, mirror.addr
    );
    let daemon = Daemon::builder()
        .images(&registries, ACCEPT_ANYTHING, "")
        .start()
        .await;
    let e = daemon
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: format!("{}/team/app:1", own.addr),
                ..Default::default()
            }),
            auth: Some(AuthConfig {
                username: "user".into(),
                password: "secret".into(),
                ..Default::default()
            }),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let to_mirror = mirror.seen();
    assert!(!to_mirror.is_empty(), "the mirror was not tried");
    assert!(
        to_mirror.iter().all(|(_, auth)| !auth),
        "the mirror got the credentials: {to_mirror:?}"
    );
    assert!(
        own.seen().iter().any(|(_, auth)| *auth),
        "the image's registry never got them: {:?}",
        own.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_whose_passwd_is_a_fifo_fails_create_at_once() {
    let registry = fixtures()["CRIOX_TEST_REGISTRY"].clone();
    let repo = format!("criox/{}", unique("fifopasswd"));
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(1_700_000_000);
    b.append_data(&mut dir, "etc/", std::io::empty()).unwrap();
    let mut fifo = tar::Header::new_gnu();
    fifo.set_entry_type(tar::EntryType::Fifo);
    fifo.set_mode(0o644);
    fifo.set_size(0);
    fifo.set_uid(0);
    fifo.set_gid(0);
    fifo.set_mtime(1_700_000_000);
    b.append_data(&mut fifo, "etc/passwd", std::io::empty())
        .unwrap();
    let tar = b.into_inner().unwrap();
    let layer = gzip(&tar);
    let image = push_image(
        &registry,
        &repo,
        &[(LAYER_GZIP, &layer)],
        &[digest(&tar)],
        "app",
    );
    let daemon = daemon(&[&registry]).await;
    daemon.pull(&image).await.unwrap();

    let mut rt = daemon.runtime().await;
    let mut pod_cfg = criox_testkit::pods::pod_config("fifo", &unique("uid"));
    pod_cfg.log_directory = daemon.dir.join("logs").display().to_string();
    criox_testkit::pods::on_host_network(&mut pod_cfg, NamespaceMode::Pod);
    let pod = criox_testkit::pods::run_pod(&mut rt, pod_cfg.clone()).await;
    let create = rt.create_container(CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(criox_testkit::image_container(&image, "fifo", &["true"])),
        sandbox_config: Some(pod_cfg),
    });
    let e = tokio::time::timeout(std::time::Duration::from_secs(30), create)
        .await
        .expect("CreateContainer blocked on the image's /etc/passwd")
        .unwrap_err();
    assert!(
        e.message()
            .contains("image /etc/passwd: is a FIFO, not a regular file"),
        "{e}"
    );
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}
