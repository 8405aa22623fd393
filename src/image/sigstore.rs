//! Sigstore signatures stored in the registry as cosign stores them: a manifest tagged
//! `sha256-<hex>.sig` in the image's repository whose layers are simple-signing payloads,
//! each with its ECDSA signature in the `dev.cosignproject.cosign/signature` annotation.
//! Only P-256 public keys (what cosign generates) are accepted.

use base64::Engine;
use serde::Deserialize;

use super::client::RepoClient;
use super::fetch;
use super::manifest::Descriptor;

#[derive(Debug, thiserror::Error)]
pub enum SigstoreError {
    #[error("public key {path}: {detail}")]
    Key { path: String, detail: String },
    #[error("no sigstore signature for {digest} in the registry")]
    Missing { digest: String },
    #[error("no signature for {digest} verifies with the policy's key ({detail})")]
    Invalid { digest: String, detail: String },
}

/// The SubjectPublicKeyInfo header of an uncompressed P-256 key; the 65-byte point follows.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A P-256 public key from PEM (`BEGIN PUBLIC KEY`) text.
#[derive(Debug, Clone)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    pub fn from_pem(pem: &str, path: &str) -> Result<PublicKey, SigstoreError> {
        let fail = |detail: &str| SigstoreError::Key {
            path: path.to_string(),
            detail: detail.to_string(),
        };
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err(fail("no PEM public key"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|_| fail("bad base64 in the PEM block"))?;
        match der.strip_prefix(P256_SPKI_PREFIX) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(PublicKey(point.to_vec())),
            _ => Err(fail("not an ECDSA P-256 public key")),
        }
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &self.0)
            .verify(message, signature)
            .is_ok()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_p256_pem_keys_load() {
        let point = [4u8; 65];
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&point);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert!(PublicKey::from_pem(&pem, "k").is_ok());
        assert!(PublicKey::from_pem("garbage", "k").is_err());
        let short = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der[..80])
        );
        assert!(PublicKey::from_pem(&short, "k").is_err());
    }
}
