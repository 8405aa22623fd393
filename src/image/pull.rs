//! Pulling an image: mirrors and search registries in order, the trust policy and its
//! signatures, the manifest (an index resolved for this platform), the config, and the
//! layers, a few at a time, each unpacked once however many pulls want it.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::client::{self, ClientError, RepoClient};
use super::manifest::{self, Descriptor, Fetched, ManifestError, OciImageConfig};
use super::policy::Policy;
use super::reference::Reference;
use super::registries::RegistriesConf;
use super::{
    Credentials, ImageError, ImageManager, ImageRecord, Locks, PullError, fetch, sigstore,
};

fn lock_for(locks: &Locks, key: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut map = locks.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, l| Arc::strong_count(l) > 1);
    map.entry(key.to_string()).or_default().clone()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const MAX_CONFIG: u64 = 8 << 20;

/// Layers one pull downloads at once, as containerd's default max_concurrent_downloads:
/// an image of 100 layers opens 3 registry connections, not 100.
const DOWNLOADS_PER_PULL: usize = 3;
/// Layer downloads across all pulls at once, so that many pulls started together (a
/// node coming up with many pods) do not open hundreds of connections and temp files.
pub(super) const DOWNLOADS_IN_ALL: usize = 12;

/// Runs `job` holding one permit of `global`.
async fn with_permit<T>(
    global: &tokio::sync::Semaphore,
    job: impl std::future::Future<Output = T>,
) -> T {
    // The semaphore lives as long as the manager and is never closed.
    let _permit = global.acquire().await.ok();
    job.await
}

/// Runs `jobs` with at most `per_pull` of them at a time, each also holding one permit
/// of `global` while it runs; the first error cancels the rest and is returned.
async fn run_bounded<F, E>(
    jobs: impl IntoIterator<Item = F>,
    per_pull: usize,
    global: &tokio::sync::Semaphore,
) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
{
    use futures_util::{StreamExt, TryStreamExt};
    // Collected first: a stream over a closure-mapped iterator makes the pull future
    // lose its Send bound (rust-lang/rust#102211).
    let jobs: Vec<_> = jobs
        .into_iter()
        .map(|job| with_permit(global, job))
        .collect();
    futures_util::stream::iter(jobs)
        .buffer_unordered(per_pull.max(1))
        .try_collect::<()>()
        .await
}

impl ImageManager {
    /// Pulls an image and returns its record (id = config digest).
    pub async fn pull(
        &self,
        name: &str,
        credentials: Option<Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        let reference = Reference::parse(name)?;
        let _changes = self.usage_changes();
        let seconds = self.timeout.as_secs();
        let result = tokio::time::timeout(self.timeout, self.pull_any(&reference, credentials))
            .await
            .map_err(|_| ImageError::Timeout {
                image: name.to_string(),
                seconds,
            })
            .and_then(|r| r);
        if result.is_err() {
            // Layers a failed pull unpacked belong to no image: do not keep them.
            self.remove_unused_layers().await;
        }
        result
    }

    async fn pull_any(
        &self,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        let conf = RegistriesConf::load(&self.registries_path)?;
        let policy = Policy::load(&self.policy_path)?;
        let mut last: Option<ImageError> = None;
        for source in conf.candidates(reference)? {
            let shown = source.reference.to_string();
            let keys = policy.check(
                &source.reference.name(),
                source.reference.tag.as_deref(),
                &shown,
            )?;
            let lock = lock_for(&self.pull_locks, &shown);
            let _one_at_a_time = lock.lock().await;
            let _gc = self.gc.read().await;
            for endpoint in &source.endpoints {
                tracing::info!(image = %shown, registry = %endpoint.host, "pulling image");
                // The request's credentials are for the image's own registry: a mirror or
                // a rewritten location was never given them.
                let own = credentials
                    .clone()
                    .filter(|_| source.reference.registry.as_deref() == Some(&*endpoint.host));
                let (credentials, reference, keys) = (&own, &source.reference, &keys);
                let pull = |insecure: bool| async move {
                    match RepoClient::new(
                        self.http.clone(),
                        &endpoint.host,
                        &endpoint.repository,
                        insecure,
                        credentials.clone(),
                    ) {
                        Ok(client) => self.pull_from(&client, reference, keys).await,
                        Err(e) => Err(PullError::Client(e)),
                    }
                };
                let mut attempt = pull(endpoint.insecure).await;
                // A registry on loopback is usually a plain-HTTP one (containerd and
                // Docker treat it so): when TLS cannot reach it, HTTP is tried before
                // giving up, and its answer counts unless it cannot be reached either.
                if !endpoint.insecure
                    && client::is_loopback_host(&endpoint.host)
                    && matches!(
                        &attempt,
                        Err(PullError::Client(ClientError::Connect { .. }))
                    )
                {
                    tracing::info!(registry = %endpoint.host, "loopback registry unreachable over TLS; trying plain HTTP");
                    match pull(true).await {
                        // A TLS server answers plain HTTP with 400: the TLS error says more.
                        Err(PullError::Client(
                            ClientError::Connect { .. }
                            | ClientError::Status {
                                status: http::StatusCode::BAD_REQUEST,
                                ..
                            },
                        )) => {}
                        other => attempt = other,
                    }
                }
                match attempt {
                    Ok(record) => {
                        tracing::info!(image = %shown, id = %record.id, "image pulled");
                        return Ok(record);
                    }
                    Err(e) => {
                        // The next mirror (or search registry) may have it: only a
                        // missing image, an unreachable registry or one that wants
                        // credentials it was not given moves on.
                        let next = matches!(
                            &e,
                            PullError::Client(c) if c.is_not_found()
                                || matches!(c, ClientError::Connect { .. } | ClientError::Unauthorized { .. })
                        );
                        tracing::warn!(image = %shown, registry = %endpoint.host, error = %e, "pull failed");
                        let err = ImageError::Pull {
                            image: shown.clone(),
                            source: e,
                        };
                        if !next {
                            return Err(err);
                        }
                        last = Some(err);
                    }
                }
            }
        }
        Err(last.unwrap_or(ImageError::NotFound {
            image: reference.to_string(),
        }))
    }

    async fn manifest(
        &self,
        client: &RepoClient,
        wanted: &str,
        expected: Option<&str>,
    ) -> Result<(Vec<u8>, String, String), PullError> {
        let (body, content_type) = client.manifest(wanted).await?;
        let actual = format!("sha256:{:x}", Sha256::digest(&body));
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(PullError::ManifestDigest {
                reference: wanted.to_string(),
                actual,
            });
        }
        Ok((body, content_type, actual))
    }

    async fn pull_from(
        &self,
        client: &RepoClient,
        reference: &Reference,
        keys: &[sigstore::PublicKey],
    ) -> Result<ImageRecord, PullError> {
        let wanted = reference.manifest_ref();
        let (mut body, content_type, mut manifest_digest) = self
            .manifest(client, wanted, reference.digest.as_deref())
            .await?;
        // Signatures sign what the name resolved to (an index or a manifest), and are
        // checked before any layer is fetched. They come from where the image comes
        // from and must name the repository the user asked for.
        for key in keys {
            sigstore::verify(client, &manifest_digest, &reference.name(), key).await?;
        }
        let repo_digest = reference.with_digest(&manifest_digest);
        let manifest = match manifest::parse(&body, &content_type)? {
            Fetched::Manifest(m) => m,
            Fetched::Index(entries) => {
                let chosen = manifest::select(&entries, &self.platform)?;
                let (b, ct, d) = self
                    .manifest(client, &chosen.digest, Some(&chosen.digest))
                    .await?;
                body = b;
                manifest_digest = d;
                match manifest::parse(&body, &ct)? {
                    Fetched::Manifest(m) => m,
                    Fetched::Index(_) => return Err(PullError::NestedIndex(chosen.digest)),
                }
            }
        };
        let config_bytes = fetch::small_blob(client, &manifest.config, MAX_CONFIG).await?;
        let config = OciImageConfig::parse(&config_bytes)?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ManifestError::LayerCount {
                diff_ids: diff_ids.len(),
                layers: manifest.layers.len(),
            }
            .into());
        }
        let chain_ids = crate::storage::chain_ids(diff_ids);
        let jobs =
            manifest.layers.iter().zip(diff_ids).zip(&chain_ids).map(
                |((desc, diff_id), chain_id)| self.ensure_layer(client, desc, diff_id, chain_id),
            );
        run_bounded(jobs, DOWNLOADS_PER_PULL, &self.downloads).await?;

        self.store
            .put_blob(&manifest.config.digest, &config_bytes)?;
        self.store.put_blob(&manifest_digest, &body)?;
        let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let record = ImageRecord {
            id: manifest.config.digest.clone(),
            repo_tags: reference.tagged().into_iter().collect(),
            repo_digests: vec![repo_digest],
            manifest_digest,
            size,
            chain_ids,
            pulled_at: now(),
        };
        Ok(self.store.add(record)?)
    }

    async fn ensure_layer(
        &self,
        client: &RepoClient,
        desc: &Descriptor,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<(), PullError> {
        let lock = lock_for(&self.layer_locks, chain_id);
        let _one_download = lock.lock().await;
        if self.layers.has(chain_id) {
            tracing::debug!(layer = %desc.digest, "layer already present");
            return Ok(());
        }
        fetch::layer(client, self.layers.clone(), desc, diff_id, chain_id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Jobs that record how many of them run at once.
    struct Gauge {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Gauge {
        fn new() -> Arc<Gauge> {
            Arc::new(Gauge {
                now: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
            })
        }

        async fn job(self: Arc<Gauge>, fail: bool) -> Result<(), String> {
            let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            if fail {
                Err("layer failed".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn one_pull_downloads_at_most_three_layers_at_once() {
        let gauge = Gauge::new();
        let global = tokio::sync::Semaphore::new(DOWNLOADS_IN_ALL);
        let jobs = (0..20).map(|_| gauge.clone().job(false));
        run_bounded(jobs, DOWNLOADS_PER_PULL, &global)
            .await
            .unwrap();
        let most = gauge.most.load(Ordering::SeqCst);
        println!("20 layers, at most {most} downloading at once");
        assert_eq!(most, DOWNLOADS_PER_PULL);
    }

    #[tokio::test]
    async fn concurrent_pulls_share_the_global_cap() {
        let gauge = Gauge::new();
        let global = tokio::sync::Semaphore::new(DOWNLOADS_IN_ALL);
        let pulls = (0..10).map(|_| {
            let jobs = (0..6).map(|_| gauge.clone().job(false));
            run_bounded(jobs, DOWNLOADS_PER_PULL, &global)
        });
        futures_util::future::try_join_all(pulls).await.unwrap();
        let most = gauge.most.load(Ordering::SeqCst);
        println!("10 pulls of 6 layers, at most {most} downloading at once");
        assert_eq!(most, DOWNLOADS_IN_ALL);
    }

    #[tokio::test]
    async fn a_failed_layer_fails_the_pull() {
        let gauge = Gauge::new();
        let global = tokio::sync::Semaphore::new(DOWNLOADS_IN_ALL);
        let jobs = (0..5).map(|i| gauge.clone().job(i == 2));
        let result = run_bounded(jobs, DOWNLOADS_PER_PULL, &global).await;
        assert_eq!(result, Err("layer failed".to_string()));
    }
}
