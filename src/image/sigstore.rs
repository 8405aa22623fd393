//! Sigstore signatures stored in the registry as cosign stores them: a manifest tagged
//! `sha256-<hex>.sig` in the image's repository whose layers are simple-signing payloads,
//! each with its ECDSA signature in the `dev.cosignproject.cosign/signature` annotation.
//! Only P-256 public keys (what cosign generates) are accepted.

use base64::Engine;
use serde::Deserialize;

use super::client::RepoClient;
use super::fetch;
use super::manifest::Descriptor;

pub use criox_formats::sigstore_key::{KeyError, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum SigstoreError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no sigstore signature for {digest} in the registry")]
    Missing { digest: String },
    #[error("no signature for {digest} verifies with the policy's key ({detail})")]
    Invalid { digest: String, detail: String },
}

#[derive(Deserialize)]
struct SignatureManifest {
    layers: Vec<SignatureLayer>,
}

#[derive(Deserialize)]
struct SignatureLayer {
    #[serde(flatten)]
    descriptor: Descriptor,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: ImageClaim,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct ImageClaim {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Checks that `digest` (the manifest or index the user's name resolved to) carries a
/// signature by `key` naming repository `name` (`registry/repository`, any tag).
pub async fn verify(
    client: &RepoClient,
    digest: &str,
    name: &str,
    key: &PublicKey,
) -> Result<(), SigstoreError> {
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let missing = || SigstoreError::Missing {
        digest: digest.to_string(),
    };
    let (body, _) = client.manifest(&tag).await.map_err(|_| missing())?;
    let manifest: SignatureManifest = serde_json::from_slice(&body).map_err(|_| missing())?;
    let mut reasons = Vec::new();
    for layer in &manifest.layers {
        let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
            continue;
        };
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            reasons.push("a signature is not base64".to_string());
            continue;
        };
        let payload = match fetch::small_blob(client, &layer.descriptor, 1 << 20).await {
            Ok(p) => p,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        if !key.verifies(&payload, &signature) {
            reasons.push("signature does not match the key".to_string());
            continue;
        }
        let Ok(claims) = serde_json::from_slice::<Payload>(&payload) else {
            reasons.push("signed payload is not simple signing JSON".to_string());
            continue;
        };
        if claims.critical.image.docker_manifest_digest != digest {
            reasons.push(format!(
                "signature is for {}",
                claims.critical.image.docker_manifest_digest
            ));
            continue;
        }
        let signed_repo = claims
            .critical
            .identity
            .docker_reference
            .split('@')
            .next()
            .unwrap_or("");
        let signed_repo = match signed_repo.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => signed_repo,
        };
        if signed_repo != name {
            reasons.push(format!("signature names {signed_repo}, not {name}"));
            continue;
        }
        return Ok(());
    }
    if reasons.is_empty() {
        return Err(missing());
    }
    Err(SigstoreError::Invalid {
        digest: digest.to_string(),
        detail: reasons.join("; "),
    })
}
