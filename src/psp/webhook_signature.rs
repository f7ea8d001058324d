//! Stripe's webhook signature: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`
//! where each v1 is HMAC-SHA256 of `"{t}.{body}"` keyed by the whole
//! `whsec_…` secret. Checked in constant time, within a tolerance window so
//! an old captured event cannot be replayed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// At most this many v1 signatures are looked at (secret rotation needs two).
const MAX_SIGNATURES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("timestamp outside the tolerance window")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Verifies `header` for `body` at time `now_unix`.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &str,
    tolerance_seconds: i64,
    now_unix: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) if signatures.len() < MAX_SIGNATURES => {
                signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_unix - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    let mac = signed_payload_mac(secret, timestamp, body);
    // verify_slice compares in constant time.
    let matched = signatures.iter().any(|sig| mac.clone().verify_slice(sig).is_ok());
    if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// The header value for `body` signed at `timestamp` (the sandbox and tests sign with it).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = signed_payload_mac(secret, timestamp, body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn signed_payload_mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn accepts_its_own_signature_and_rotated_secrets() {
        let header = sign(SECRET, 1000, b"{}");
        assert_eq!(verify(Some(&header), b"{}", SECRET, 300, 1100), Ok(()));
        let other = sign("whsec_old", 1000, b"{}");
        let both = format!("{header},v1={}", other.split("v1=").nth(1).unwrap());
        assert_eq!(verify(Some(&both), b"{}", "whsec_old", 300, 1000), Ok(()));
    }

    #[test]
    fn refuses_forged_stale_and_malformed() {
        let header = sign(SECRET, 1000, b"{}");
        assert_eq!(verify(Some(&header), b"{ }", SECRET, 300, 1000), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), b"{}", "whsec_other", 300, 1000), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), b"{}", SECRET, 300, 1301), Err(SignatureError::Stale));
        assert_eq!(verify(None, b"{}", SECRET, 300, 1000), Err(SignatureError::Missing));
        assert_eq!(verify(Some("t=1000"), b"{}", SECRET, 300, 1000), Err(SignatureError::Malformed));
        assert_eq!(verify(Some("v1=abcd"), b"{}", SECRET, 300, 1000), Err(SignatureError::Malformed));
        assert_eq!(verify(Some("t=1000,v1=zz"), b"{}", SECRET, 300, 1000), Err(SignatureError::Malformed));
    }
}
