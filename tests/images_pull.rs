//! Pulling, listing, inspecting and removing images through the real daemon, from the
//! loopback registries that `hack/fixtures` serves.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criox_proto::v1::*;
use criox_testkit::{ACCEPT_ANYTHING, Daemon, fixtures, insecure_registries};
use tonic::Code;

/// A daemon whose registries configuration marks the fixture registries insecure (plain
/// HTTP) and searches the main one for short names, plus `extra_registries` TOML; `policy`
/// replaces the one that accepts anything.
async fn daemon_with(extra_registries: &str, policy: Option<&str>) -> Daemon {
    daemon_with_certs(extra_registries, policy, "/nonexistent").await
}

async fn daemon_with_certs(
    extra_registries: &str,
    policy: Option<&str>,
    certs_dir: &str,
) -> Daemon {
    let fx = fixtures();
    let registries = format!(
        "unqualified-search-registries = [\"{r}\"]\n{insecure}{extra_registries}",
        r = fx["CRIOX_TEST_REGISTRY"],
        insecure = insecure_registries(&[
            &fx["CRIOX_TEST_REGISTRY"],
            &fx["CRIOX_TEST_AUTH_REGISTRY"],
            &fx["CRIOX_TEST_TOKEN_REGISTRY"],
        ]),
    );
    Daemon::builder()
        .images(
            &registries,
            policy.unwrap_or(ACCEPT_ANYTHING),
            &format!("certs_dir = {certs_dir:?}"),
        )
        .start()
        .await
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull_auth(
    daemon: &Daemon,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    daemon
        .images()
        .await
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(daemon: &Daemon, image: &str, verbose: bool) -> ImageStatusResponse {
    daemon
        .images()
        .await
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn list(daemon: &Daemon) -> Vec<Image> {
    daemon.list_images().await
}

async fn remove(daemon: &Daemon, image: &str) {
    daemon
        .images()
        .await
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .unwrap();
}

fn layer_dirs(daemon: &Daemon) -> Vec<PathBuf> {
    let dir = daemon.root.join("storage/layers");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn layer_dir(daemon: &Daemon, chain_id: &str) -> PathBuf {
    daemon
        .root
        .join("storage/layers")
        .join(chain_id.trim_start_matches("sha256:"))
}

fn verbose_info(resp: &ImageStatusResponse) -> serde_json::Value {
    serde_json::from_str(&resp.info["info"]).unwrap()
}

async fn fs_used(daemon: &Daemon) -> (u64, u64) {
    let r = daemon
        .images()
        .await
        .image_fs_info(ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    let fs = &r.image_filesystems[0];
    assert!(!fs.fs_id.as_ref().unwrap().mountpoint.is_empty());
    (
        fs.used_bytes.as_ref().unwrap().value,
        fs.inodes_used.as_ref().unwrap().value,
    )
}

#[tokio::test]
async fn pull_status_list_and_remove_by_every_name() {
    let fx = fixtures();
    let daemon = daemon_with("", None).await;
    let image = &fx["CRIOX_TEST_IMAGE_BUSYBOX"];
    let (bytes_before, _) = fs_used(&daemon).await;
    let id = daemon.pull(image).await.unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let by_tag = status(&daemon, image, false).await.image.unwrap();
    assert_eq!(by_tag.id, id);
    assert_eq!(by_tag.repo_tags, vec![image.clone()]);
    assert_eq!(by_tag.repo_digests.len(), 1);
    let digest_ref = by_tag.repo_digests[0].clone();
    assert!(digest_ref.starts_with(&format!(
        "{}/criox/busybox@sha256:",
        fx["CRIOX_TEST_REGISTRY"]
    )));
    for name in [&id, &id[7..19], &digest_ref] {
        let found = status(&daemon, name, false).await.image;
        assert_eq!(found.map(|i| i.id), Some(id.clone()), "lookup by {name}");
    }
    assert!(status(&daemon, "sha256:0000", false).await.image.is_none());
    assert!(by_tag.size > 500_000, "size {}", by_tag.size);

    // Several tags of one image: one image, one set of layers.
    let registry = &fx["CRIOX_TEST_REGISTRY"];
    for tag in ["1.36", "stable"] {
        assert_eq!(
            daemon
                .pull(&format!("{registry}/criox/busybox:{tag}"))
                .await
                .unwrap(),
            id
        );
    }
    let all = list(&daemon).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].repo_tags.len(), 3);
    assert_eq!(layer_dirs(&daemon).len(), 1);
    let (bytes_pulled, inodes_pulled) = fs_used(&daemon).await;
    assert!(bytes_pulled > bytes_before + 500_000);
    assert!(
        inodes_pulled > 250,
        "busybox has hundreds of applet links: {inodes_pulled}"
    );

    // A filter returns just that image.
    let filtered = daemon
        .images()
        .await
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter { image: spec(image) }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);

    // Removing one tag of several keeps the image and its other tags.
    remove(&daemon, &format!("{registry}/criox/busybox:1.36")).await;
    let left = status(&daemon, &id, false).await.image.unwrap();
    assert_eq!(left.repo_tags.len(), 2);
    assert!(!left.repo_tags.iter().any(|t| t.ends_with(":1.36")));
    assert_eq!(layer_dirs(&daemon).len(), 1);

    // Removing by id takes the image and its layers.
    remove(&daemon, &id).await;
    assert!(list(&daemon).await.is_empty());
    assert!(layer_dirs(&daemon).is_empty());
    assert!(status(&daemon, image, false).await.image.is_none());
    // Removing what is gone is not an error (CRI).
    remove(&daemon, &id).await;

    // Records survive a restart.
    let mut daemon = daemon;
    daemon.pull(image).await.unwrap();
    daemon.stop();
    daemon.spawn().await;
    assert_eq!(status(&daemon, image, false).await.image.unwrap().id, id);
}

#[tokio::test]
async fn docker_oci_zstd_and_multi_platform_images_share_layers() {
    let fx = fixtures();
    let daemon = daemon_with("", None).await;
    let id = daemon.pull(&fx["CRIOX_TEST_IMAGE_BUSYBOX"]).await.unwrap();
    for key in [
        "CRIOX_TEST_IMAGE_BUSYBOX_DOCKER",
        "CRIOX_TEST_IMAGE_MULTI",
        "CRIOX_TEST_IMAGE_MULTI_DOCKER",
        "CRIOX_TEST_IMAGE_BUSYBOX_ZSTD",
    ] {
        let got = daemon
            .pull(&fx[key])
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        // The same config: the index chose this node's platform (amd64), not arm64.
        assert_eq!(got, id, "{key}");
    }
    let image = status(&daemon, &id, true).await;
    let info = verbose_info(&image);
    assert_eq!(info["imageSpec"]["architecture"], "amd64");
    // Each name keeps the name the user pulled.
    let tags = image.image.unwrap().repo_tags;
    assert_eq!(tags.len(), 5, "{tags:?}");
    assert!(tags.contains(&fx["CRIOX_TEST_IMAGE_MULTI_DOCKER"]));
    assert_eq!(layer_dirs(&daemon).len(), 1, "layers are stored once");
    let busybox = layer_dirs(&daemon)[0].join("bin/busybox");
    assert!(std::fs::metadata(busybox).unwrap().len() > 500_000);
}

#[tokio::test]
async fn image_config_gives_user_and_process_defaults() {
    let fx = fixtures();
    let daemon = daemon_with("", None).await;
    let uid_image = &fx["CRIOX_TEST_IMAGE_CONFIG_UID"];
    daemon.pull(uid_image).await.unwrap();
    let resp = status(&daemon, uid_image, true).await;
    let image = resp.image.as_ref().unwrap();
    assert_eq!(image.uid.as_ref().map(|u| u.value), Some(1000));
    assert_eq!(image.username, "");
    let config = &verbose_info(&resp)["imageSpec"]["config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(config["Cmd"], serde_json::json!(["echo hello"]));
    assert_eq!(config["WorkingDir"], "/work");
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .contains(&"CRIOX_TEST=image-env".into())
    );
    assert!(config["Volumes"].get("/data").is_some());
    assert_eq!(config["Labels"]["org.criox.test"], "config");

    let name_image = &fx["CRIOX_TEST_IMAGE_CONFIG_NAME"];
    daemon.pull(name_image).await.unwrap();
    let image = status(&daemon, name_image, false).await.image.unwrap();
    assert_eq!(image.uid, None);
    assert_eq!(image.username, "daemon");
    // Both tags of one repository are separate images.
    assert_eq!(list(&daemon).await.len(), 2);
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 64];
    // SAFETY: valid strings and a 64-byte buffer.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 64) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

/// Unmounts on drop, so that a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn whiteouts_ownership_and_special_files_survive_into_overlayfs() {
    let fx = fixtures();
    let daemon = daemon_with("", None).await;
    let image = &fx["CRIOX_TEST_IMAGE_LAYERS"];
    daemon.pull(image).await.unwrap();
    let info = verbose_info(&status(&daemon, image, true).await);
    let chains: Vec<String> = info["chainIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(chains.len(), 3);
    let l2 = layer_dir(&daemon, &chains[1]);
    let l3 = layer_dir(&daemon, &chains[2]);

    // The unpacked layers hold overlay whiteouts, not OCI ones.
    let wh = std::fs::symlink_metadata(l3.join("etc/old-file")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!l3.join("etc/.wh.old-file").exists());
    assert_eq!(
        xattr(&l3.join("opaque"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    let owned = std::fs::metadata(l2.join("data/owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1000, 2000, 0o640)
    );
    assert_eq!(
        std::fs::metadata(l2.join("data/a")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::metadata(l2.join("data/a")).unwrap().ino(),
        std::fs::metadata(l2.join("data/a-hardlink")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(l2.join("data/abs-symlink")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(
        std::fs::symlink_metadata(l2.join("data/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let null = std::fs::symlink_metadata(l2.join("dev/criox-null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));

    // The container's view: the layers stacked by overlayfs, topmost first.
    let lowers: Vec<String> = chains
        .iter()
        .rev()
        .map(|c| layer_dir(&daemon, c).display().to_string())
        .collect();
    let merged = daemon.dir.join("merged");
    std::fs::create_dir(&merged).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}", lowers.join(":")))
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success(), "mount overlay");
    let _mounted = Mounted(merged.clone());
    assert_eq!(
        std::fs::read_to_string(merged.join("data/a")).unwrap(),
        "two\n"
    );
    assert!(
        !merged.join("etc/old-file").exists(),
        "whiteout hides the file"
    );
    assert!(!merged.join("data/dir/removed").exists());
    assert!(merged.join("data/dir").is_dir());
    assert!(
        !merged.join("opaque/old").exists(),
        "opaque dir hides lower content"
    );
    assert!(!merged.join("opaque/sub").exists());
    assert_eq!(
        std::fs::read_to_string(merged.join("opaque/new")).unwrap(),
        "new\n"
    );
    assert!(merged.join("bin/busybox").exists());
}

#[tokio::test]
async fn short_names_and_mirrors_keep_the_users_name() {
    let fx = fixtures();
    let registry = &fx["CRIOX_TEST_REGISTRY"];
    // example.invalid cannot be reached; its mirror (the fixture registry) serves it.
    let mirrors = format!(
        "[[registry]]\nprefix = \"example.invalid/mirrored\"\nlocation = \"127.0.0.1:9/nothing\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{registry}/absent\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{registry}/criox\"\ninsecure = true\n"
    );
    let daemon = daemon_with(&mirrors, None).await;
    let id = daemon.pull("criox/busybox:stable").await.unwrap();
    let image = status(&daemon, "criox/busybox:stable", false)
        .await
        .image
        .unwrap();
    assert_eq!(image.id, id);
    assert_eq!(
        image.repo_tags,
        vec![format!("{registry}/criox/busybox:stable")]
    );

    assert_eq!(
        daemon
            .pull("example.invalid/mirrored/busybox:1.36")
            .await
            .unwrap(),
        id
    );
    let image = status(&daemon, &id, false).await.image.unwrap();
    assert!(
        image
            .repo_tags
            .contains(&"example.invalid/mirrored/busybox:1.36".to_string())
    );
    assert!(
        image
            .repo_digests
            .iter()
            .any(|d| d.starts_with("example.invalid/mirrored/busybox@sha256:")),
        "{:?}",
        image.repo_digests
    );
    assert!(!image.repo_tags.iter().any(|t| t.contains("/criox/criox")));
}

#[tokio::test]
async fn ctl_pull_images_inspecti_rmi_imagefsinfo() {
    let fx = fixtures();
    let daemon = daemon_with("", None).await;
    let image = &fx["CRIOX_TEST_IMAGE_BUSYBOX"];
    let run = |args: &[&str]| {
        let out = daemon.ctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let pulled = run(&["pull", image]);
    assert!(
        pulled.starts_with("Image is up to date for sha256:"),
        "{pulled}"
    );
    let table = run(&["images"]);
    assert!(
        table.contains(&format!("{}/criox/busybox", fx["CRIOX_TEST_REGISTRY"])),
        "{table}"
    );
    assert!(table.contains("latest"), "{table}");
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspecti", image])).unwrap();
    assert_eq!(inspect["status"]["repoTags"][0], image.as_str());
    assert!(inspect["info"]["imageSpec"]["rootfs"]["diff_ids"].is_array());
    let fsinfo: serde_json::Value = serde_json::from_str(&run(&["imagefsinfo"])).unwrap();
    let used: u64 = fsinfo["status"]["imageFilesystems"][0]["usedBytes"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(used > 500_000);
    run(&["rmi", image]);
    assert_eq!(run(&["images", "-q"]).trim(), "");
    let out = daemon.ctl(&["inspecti", image]);
    assert!(!out.status.success());
}

#[tokio::test]
async fn basic_auth_registry_needs_the_right_password() {
    let fx = fixtures();
    let daemon = daemon_with("", None).await;
    let image = format!("{}/criox/busybox:latest", fx["CRIOX_TEST_AUTH_REGISTRY"]);
    let e = daemon.pull(&image).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    assert!(e.message().contains(&image), "{e}");
    let wrong = AuthConfig {
        username: fx["CRIOX_TEST_AUTH_USER"].clone(),
        password: "wrong".into(),
        ..Default::default()
    };
    let e = pull_auth(&daemon, &image, Some(wrong)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    assert!(list(&daemon).await.is_empty());
    let right = AuthConfig {
        username: fx["CRIOX_TEST_AUTH_USER"].clone(),
        password: fx["CRIOX_TEST_AUTH_PASSWORD"].clone(),
        ..Default::default()
    };
    pull_auth(&daemon, &image, Some(right)).await.unwrap();
    // The `auth` form (base64 of user:password) works too.
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        fx["CRIOX_TEST_AUTH_USER"], fx["CRIOX_TEST_AUTH_PASSWORD"]
    ));
    let image2 = format!("{}/criox/busybox:stable", fx["CRIOX_TEST_AUTH_REGISTRY"]);
    pull_auth(
        &daemon,
        &image2,
        Some(AuthConfig {
            auth: encoded,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let ctl = daemon.ctl(&[
        "pull",
        "--creds",
        &format!(
            "{}:{}",
            fx["CRIOX_TEST_AUTH_USER"], fx["CRIOX_TEST_AUTH_PASSWORD"]
        ),
        &format!("{}/criox/pause:latest", fx["CRIOX_TEST_AUTH_REGISTRY"]),
    ]);
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
}

#[tokio::test]
async fn trust_policy_refuses_and_stores_nothing() {
    let fx = fixtures();
    let registry = &fx["CRIOX_TEST_REGISTRY"];
    let policy = format!(
        r#"{{"default": [{{"type": "reject"}}],
            "transports": {{"docker": {{
              "{registry}/criox/busybox": [{{"type": "insecureAcceptAnything"}}],
              "{registry}/criox/pause": [{{"type": "sigstoreSigned", "keyPath": "/nonexistent.pub"}}],
              "{registry}/criox/config": [{{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent.gpg"}}]
            }}}}}}"#
    );
    let daemon = daemon_with("", Some(&policy)).await;
    daemon.pull(&fx["CRIOX_TEST_IMAGE_BUSYBOX"]).await.unwrap();
    let cases: HashMap<&str, &str> = [
        ("CRIOX_TEST_IMAGE_LAYERS", "\"reject\""),
        ("CRIOX_TEST_IMAGE_PAUSE", "sigstoreSigned"),
        ("CRIOX_TEST_IMAGE_CONFIG_UID", "signedBy"),
    ]
    .into_iter()
    .collect();
    for (key, why) in cases {
        let e = daemon.pull(&fx[key]).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{key}: {e}");
        assert!(
            e.message().contains(why) && e.message().contains(&fx[key]),
            "{key}: {e}"
        );
    }
    assert_eq!(list(&daemon).await.len(), 1);
    assert_eq!(layer_dirs(&daemon).len(), 1);
}

#[tokio::test]
async fn https_registry_is_trusted_through_certs_d_only() {
    let fx = fixtures();
    let image = format!("{}/criox/busybox:latest", fx["CRIOX_TEST_TLS_REGISTRY"]);
    // Without its CA the registry's certificate is refused.
    let daemon = daemon_with("", None).await;
    let e = daemon.pull(&image).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(e.message().contains(&image), "{e}");
    assert!(list(&daemon).await.is_empty());
    drop(daemon);

    let daemon = daemon_with_certs("", None, &fx["CRIOX_TEST_TLS_CERTS_DIR"]).await;
    let id = daemon.pull(&image).await.unwrap();
    assert_eq!(status(&daemon, &image, false).await.image.unwrap().id, id);
}

/// The token registry and its issuer behind one port, as a registry that issues its own
/// tokens is: `/token` goes to the issuer, the rest to the registry, whose challenge names
/// this front's `/token` as its realm. Stops when dropped.
struct SameOriginFront {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl SameOriginFront {
    async fn start(registry: &str, issuer: &str) -> SameOriginFront {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client: ProxyClient =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let route = Arc::new((registry.to_string(), issuer.to_string(), addr.clone()));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, route) = (client.clone(), route.clone());
                let service = hyper::service::service_fn(move |req| {
                    forward(client.clone(), route.clone(), req)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        SameOriginFront { addr, task }
    }
}

impl Drop for SameOriginFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type ProxyClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// One request through the front; `route` is (registry, issuer, front) addresses.
async fn forward(
    client: ProxyClient,
    route: Arc<(String, String, String)>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, http::Error> {
    use http_body_util::BodyExt;
    let (registry, issuer, front) = &*route;
    let upstream = if req.uri().path() == "/token" {
        issuer
    } else {
        registry
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut out = http::Request::builder()
        .method(req.method())
        .uri(format!("http://{upstream}{path}"));
    for (name, value) in req.headers() {
        if name != http::header::HOST {
            out = out.header(name, value);
        }
    }
    let answer = match client.request(out.body(Default::default())?).await {
        Ok(answer) => answer,
        Err(e) => {
            return http::Response::builder()
                .status(502)
                .body(e.to_string().into());
        }
    };
    let (mut parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    for hop in [http::header::TRANSFER_ENCODING, http::header::CONNECTION] {
        parts.headers.remove(hop);
    }
    if let Some(challenge) = parts.headers.get(http::header::WWW_AUTHENTICATE) {
        let challenge = challenge.to_str().unwrap_or_default().replace(
            &format!("http://{issuer}/token"),
            &format!("http://{front}/token"),
        );
        parts
            .headers
            .insert(http::header::WWW_AUTHENTICATE, challenge.parse().unwrap());
    }
    Ok(http::Response::from_parts(parts, body.into()))
}

/// A realm on the registry's own host and port gets the credentials: only the right ones
/// get a token.
#[tokio::test]
async fn a_token_realm_on_the_registry_itself_gets_the_credentials() {
    let fx = fixtures();
    let issuer = std::fs::read_to_string(Path::new(&fx["DIR"]).join("tokenissuer.addr"))
        .expect("the token issuer's address");
    let front = SameOriginFront::start(&fx["CRIOX_TEST_TOKEN_REGISTRY"], issuer.trim()).await;
    let daemon = daemon_with(&insecure_registries(&[&front.addr]), None).await;
    let image = format!("{}/criox/busybox:latest", front.addr);
    let wrong = AuthConfig {
        username: fx["CRIOX_TEST_AUTH_USER"].clone(),
        password: "wrong".into(),
        ..Default::default()
    };
    let e = pull_auth(&daemon, &image, Some(wrong)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    assert!(e.message().contains("token service"), "{e}");
    let right = AuthConfig {
        username: fx["CRIOX_TEST_AUTH_USER"].clone(),
        password: fx["CRIOX_TEST_AUTH_PASSWORD"].clone(),
        ..Default::default()
    };
    let id = pull_auth(&daemon, &image, Some(right)).await.unwrap();
    assert_eq!(status(&daemon, &image, false).await.image.unwrap().id, id);
}

/// The fixture token registry sends clients for a token to an issuer on another loopback
/// port over plain HTTP: the credentials stay with the daemon, and the issuer, which
/// answers only requests that carry the right basic credentials, refuses the token.
#[tokio::test]
async fn a_token_realm_on_another_port_gets_no_credentials() {
    let fx = fixtures();
    let daemon = daemon_with("", None).await;
    let image = format!("{}/criox/busybox:latest", fx["CRIOX_TEST_TOKEN_REGISTRY"]);
    let right = AuthConfig {
        username: fx["CRIOX_TEST_AUTH_USER"].clone(),
        password: fx["CRIOX_TEST_AUTH_PASSWORD"].clone(),
        ..Default::default()
    };
    let e = pull_auth(&daemon, &image, Some(right)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    assert!(e.message().contains("token service"), "{e}");
    assert!(e.message().contains("401"), "{e}");
    let log = daemon.log();
    assert!(
        log.contains("asking the token realm without credentials") && log.contains("plain HTTP"),
        "{log}"
    );
    assert!(list(&daemon).await.is_empty());
}

#[tokio::test]
async fn sigstore_signatures_are_verified_with_the_policy_key() {
    let fx = fixtures();
    let registry = &fx["CRIOX_TEST_REGISTRY"];
    let key = &fx["CRIOX_TEST_SIGSTORE_KEY"];
    let policy = format!(
        r#"{{"default": [{{"type": "insecureAcceptAnything"}}],
            "transports": {{"docker": {{
              "{registry}/criox/signed": [{{"type": "sigstoreSigned", "keyPath": "{key}"}}],
              "{registry}/criox/badsig": [{{"type": "sigstoreSigned", "keyPath": "{key}"}}],
              "{registry}/criox/busybox": [{{"type": "sigstoreSigned", "keyPath": "{key}"}}]
            }}}}}}"#
    );
    let daemon = daemon_with("", Some(&policy)).await;
    daemon.pull(&fx["CRIOX_TEST_IMAGE_SIGNED"]).await.unwrap();
    let e = daemon
        .pull(&fx["CRIOX_TEST_IMAGE_BADSIG"])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("does not match the key"), "{e}");
    assert!(e.message().contains(&fx["CRIOX_TEST_IMAGE_BADSIG"]), "{e}");
    let e = daemon
        .pull(&fx["CRIOX_TEST_IMAGE_BUSYBOX"])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("no sigstore signature"), "{e}");
    // Only the signed image is stored.
    let images = list(&daemon).await;
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].repo_tags,
        vec![fx["CRIOX_TEST_IMAGE_SIGNED"].clone()]
    );
}
