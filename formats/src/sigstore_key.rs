//! The policy's public keys: P-256 only, what cosign generates. Parsing needs nothing
//! of the registry client, so a policy can be read (and tested) on its own.

use base64::Engine;

#[derive(Debug, thiserror::Error)]
#[error("public key {path}: {detail}")]
pub struct KeyError {
    pub path: String,
    pub detail: String,
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
    pub fn from_pem(pem: &str, path: &str) -> Result<PublicKey, KeyError> {
        let fail = |detail: &str| KeyError {
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

    /// Whether `signature` (ASN.1 DER ECDSA) signs `message` with this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &self.0)
            .verify(message, signature)
            .is_ok()
    }
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
