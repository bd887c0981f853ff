//! Tokens as Pulsar uses them: JSON Web Tokens whose `sub` claim is the
//! client's role, signed with a shared secret (HS256) or a private key
//! (RS256, ES256) and checked with the secret or the public key. `exp`, when
//! present, is when the token stops being accepted.
//!
//! Also makes the keys and tokens (`magnetar tokens ...`). Key pairs made
//! here are ES256 (P-256); RS256 public keys from elsewhere (e.g. Pulsar's
//! `tokens create-key-pair`) verify too.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no token given")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("bad key: {0}")]
    BadKey(String),
}

pub type Result<T> = std::result::Result<T, AuthError>;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// Who a valid token says the client is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub role: String,
    /// Seconds since the epoch, if the token expires.
    pub expires_at: Option<u64>,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks tokens.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    alg: Algorithm,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({:?})", self.alg)
    }
}

impl Verifier {
    /// For tokens signed with a shared secret (HS256).
    pub fn from_secret(secret: &[u8]) -> Verifier {
        Verifier {
            key: DecodingKey::from_secret(secret),
            alg: Algorithm::HS256,
        }
    }

    /// For tokens signed with the private half of a PEM public key: RSA
    /// (RS256) or P-256 (ES256).
    pub fn from_public_pem(pem: &[u8]) -> Result<Verifier> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Verifier {
                key,
                alg: Algorithm::RS256,
            });
        }
        DecodingKey::from_ec_pem(pem)
            .map(|key| Verifier {
                key,
                alg: Algorithm::ES256,
            })
            .map_err(|e| AuthError::BadKey(format!("not an RSA or P-256 public key: {e}")))
    }

    pub fn verify(&self, token: &str) -> Result<Identity> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut v = Validation::new(self.alg);
        // `exp` is optional (Pulsar's tokens may live forever); checked below.
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &v)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        if c.sub.is_empty() {
            return Err(AuthError::Invalid(
                "the token names no subject (role)".into(),
            ));
        }
        if c.exp.is_some_and(|exp| exp <= now_secs()) {
            return Err(AuthError::Expired);
        }
        Ok(Identity {
            role: c.sub,
            expires_at: c.exp,
        })
    }
}

/// What tokens are signed with.
pub enum Signer {
    Secret(Vec<u8>),
    /// A PKCS#8 PEM private key (P-256 or RSA).
    PrivatePem(Vec<u8>),
}

impl Signer {
    pub fn token(&self, subject: &str, expires_at: Option<u64>) -> Result<String> {
        let claims = Claims {
            sub: subject.to_string(),
            exp: expires_at,
        };
        let (header, key) = match self {
            Signer::Secret(s) => (Header::new(Algorithm::HS256), EncodingKey::from_secret(s)),
            Signer::PrivatePem(pem) => match EncodingKey::from_ec_pem(pem) {
                Ok(k) => (Header::new(Algorithm::ES256), k),
                Err(_) => (
                    Header::new(Algorithm::RS256),
                    EncodingKey::from_rsa_pem(pem).map_err(|e| AuthError::BadKey(e.to_string()))?,
                ),
            },
        };
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| AuthError::BadKey(e.to_string()))
    }
}

/// A new random HS256 secret (32 bytes).
pub fn create_secret_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .expect("the system's random source works");
    key
}

/// A secret key as stored: raw bytes, or their base64 (what
/// `create-secret-key` prints).
pub fn read_secret_key(bytes: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    match B64.decode(text) {
        Ok(k) if k.len() >= 16 => k,
        _ => bytes.to_vec(),
    }
}

pub fn secret_key_base64(key: &[u8]) -> String {
    B64.encode(key)
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte
/// uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A new ES256 key pair as PEM: (PKCS#8 private key, public key).
pub fn create_key_pair() -> Result<(String, String)> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| AuthError::BadKey(e.to_string()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| AuthError::BadKey(e.to_string()))?;
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_tokens_verify_and_name_their_role() {
        let key = create_secret_key();
        let token = Signer::Secret(key.clone()).token("alice", None).unwrap();
        let id = Verifier::from_secret(&key).verify(&token).unwrap();
        assert_eq!(id.role, "alice");
        assert_eq!(id.expires_at, None);
        // Another key, a tampered token, garbage: rejected.
        let other = Verifier::from_secret(&create_secret_key());
        assert!(matches!(other.verify(&token), Err(AuthError::Invalid(_))));
        let mut bad = token.clone();
        bad.push('x');
        assert!(Verifier::from_secret(&key).verify(&bad).is_err());
        assert_eq!(
            Verifier::from_secret(&key).verify(" "),
            Err(AuthError::Missing)
        );
        assert!(Verifier::from_secret(&key).verify("a.b.c").is_err());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let key = create_secret_key();
        let s = Signer::Secret(key.clone());
        let v = Verifier::from_secret(&key);
        let past = s.token("bob", Some(now_secs() - 10)).unwrap();
        assert_eq!(v.verify(&past), Err(AuthError::Expired));
        let future = s.token("bob", Some(now_secs() + 3600)).unwrap();
        assert_eq!(v.verify(&future).unwrap().role, "bob");
    }

    #[test]
    fn key_pairs_sign_and_verify_and_do_not_cross() {
        let (private, public) = create_key_pair().unwrap();
        let token = Signer::PrivatePem(private.into_bytes())
            .token("svc", None)
            .unwrap();
        let v = Verifier::from_public_pem(public.as_bytes()).unwrap();
        assert_eq!(v.verify(&token).unwrap().role, "svc");
        let (_, other_public) = create_key_pair().unwrap();
        let other = Verifier::from_public_pem(other_public.as_bytes()).unwrap();
        assert!(other.verify(&token).is_err());
        // A token made with a secret does not pass a public-key verifier.
        let hs = Signer::Secret(create_secret_key())
            .token("svc", None)
            .unwrap();
        assert!(v.verify(&hs).is_err());
        assert!(Verifier::from_public_pem(b"not a key").is_err());
    }

    #[test]
    fn secret_keys_read_raw_or_base64() {
        let key = create_secret_key();
        assert_eq!(read_secret_key(&key), key);
        assert_eq!(read_secret_key(secret_key_base64(&key).as_bytes()), key);
    }
}
