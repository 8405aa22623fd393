//! Downloading blobs with their digest and size checked as the bytes arrive. Layers are
//! unpacked while they download: the bytes go through a channel to a blocking thread
//! that decompresses and unpacks, and the layer becomes visible (a rename) only once both
//! the blob digest and the diff id are right.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::client::{ClientError, RepoClient};
use super::manifest::Descriptor;
use crate::storage::unpack::{UnpackError, unpack_layer};
use crate::storage::{LayerStore, StorageError, discard};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("blob {digest}: digest mismatch, the registry sent {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("layer {digest}: {source}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("layer {digest}: its content has diff id {actual}, the image config says {expected}")]
    DiffIdMismatch {
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("layer {digest}: {source}")]
    Storage {
        digest: String,
        #[source]
        source: StorageError,
    },
    #[error("layer {digest}: the unpacking thread failed: {detail}")]
    Worker { digest: String, detail: String },
}

/// Fetches a small blob (a config) into memory, verified.
pub async fn small_blob(
    client: &RepoClient,
    desc: &Descriptor,
    limit: u64,
) -> Result<Vec<u8>, FetchError> {
    if desc.size > limit {
        return Err(FetchError::SizeMismatch {
            digest: desc.digest.clone(),
            expected: limit,
            actual: desc.size,
        });
    }
    let mut body = client.blob(&desc.digest).await?;
    let mut data = Vec::with_capacity(desc.size as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| ClientError::Body {
            host: client.host().to_string(),
            source,
        })?;
        if let Ok(chunk) = frame.into_data() {
            data.extend_from_slice(&chunk);
            if data.len() as u64 > desc.size {
                break;
            }
        }
    }
    verify(desc, &data)?;
    Ok(data)
}

/// Checks size and digest of a complete blob.
pub fn verify(desc: &Descriptor, data: &[u8]) -> Result<(), FetchError> {
    if data.len() as u64 != desc.size {
        return Err(FetchError::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: data.len() as u64,
        });
    }
    let actual = format!("sha256:{:x}", Sha256::digest(data));
    if actual != desc.digest {
        return Err(FetchError::DigestMismatch {
            digest: desc.digest.clone(),
            actual,
        });
    }
    Ok(())
}

enum Chunk {
    Data(Bytes),
    /// The download finished and verified: the stream may end.
    Verified,
}

/// A `Read` over the chunks the download sends; a stream that stops without
/// `Verified` is an error, so a failed or cancelled download never unpacks "fine".
struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.current = b,
                Some(Chunk::Verified) => self.done = true,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the layer download stopped",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Downloads and unpacks one layer into the layer store under `chain_id`.
pub async fn layer(
    client: &RepoClient,
    layers: Arc<LayerStore>,
    desc: &Descriptor,
    diff_id: &str,
    chain_id: &str,
) -> Result<PathBuf, FetchError> {
    let started = Instant::now();
    let digest = desc.digest.clone();
    let storage_err = |source| FetchError::Storage {
        digest: digest.clone(),
        source,
    };
    let tmp = layers.temp_dir().map_err(storage_err)?;
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    let worker = {
        let tmp = tmp.clone();
        let layers = layers.clone();
        let digest = digest.clone();
        let diff_id = diff_id.to_string();
        let chain_id = chain_id.to_string();
        // The worker alone decides the temporary directory's fate, so that cancelling
        // the pull cannot leave a half-written layer visible.
        tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx,
                current: Bytes::new(),
                done: false,
            };
            let result = match unpack_layer(reader, &tmp) {
                Err(source) => Err(FetchError::Unpack {
                    digest: digest.clone(),
                    source,
                }),
                Ok(u) if u.diff_id != diff_id => Err(FetchError::DiffIdMismatch {
                    digest: digest.clone(),
                    expected: diff_id,
                    actual: u.diff_id,
                }),
                Ok(_) => layers
                    .commit(&tmp, &chain_id)
                    .map_err(|source| FetchError::Storage {
                        digest: digest.clone(),
                        source,
                    }),
            };
            if result.is_err() {
                discard(&tmp);
            }
            result
        })
    };

    let download = async move {
        let mut body = client.blob(&desc.digest).await?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut next_report: u64 = 32 << 20;
        let mut worker_gone = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| ClientError::Body {
                host: client.host().to_string(),
                source,
            })?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            received += chunk.len() as u64;
            if received > desc.size {
                return Err(FetchError::SizeMismatch {
                    digest: desc.digest.clone(),
                    expected: desc.size,
                    actual: received,
                });
            }
            hasher.update(&chunk);
            if received >= next_report {
                tracing::info!(layer = %desc.digest, received, total = desc.size, "pulling layer");
                next_report += 32 << 20;
            }
            // If the worker stopped early (bad tar), keep reading: a wrong digest is the
            // better explanation of a broken stream than the tar error it caused.
            if !worker_gone && tx.send(Chunk::Data(chunk)).await.is_err() {
                worker_gone = true;
            }
        }
        if received != desc.size {
            return Err(FetchError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: received,
            });
        }
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != desc.digest {
            return Err(FetchError::DigestMismatch {
                digest: desc.digest.clone(),
                actual,
            });
        }
        let _ = tx.send(Chunk::Verified).await;
        Ok(())
    };
    let downloaded = download.await;
    let unpacked = worker.await.map_err(|e| FetchError::Worker {
        digest: digest.clone(),
        detail: e.to_string(),
    });
    // A download error explains an unpack error ("stream stopped"), not the reverse.
    downloaded?;
    let dir = unpacked??;
    tracing::info!(
        layer = %desc.digest,
        bytes = desc.size,
        ms = started.elapsed().as_millis() as u64,
        "layer pulled and unpacked"
    );
    Ok(dir)
}
