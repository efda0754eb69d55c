//! HMAC-SHA256 request signatures, as Slack and Grafana send them: the hex
//! MAC of some parts of the request, checked in constant time.

use hmac::{KeyInit, Mac};

use crate::secret::Secret;

/// Whether `given_hex` is the hex HMAC-SHA256, keyed with `secret`, of
/// `parts` one after the other. The comparison takes the same time
/// however much of it matches.
pub fn matches(secret: &Secret, parts: &[&[u8]], given_hex: &str) -> bool {
    let Ok(given) = hex::decode(given_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&given).is_ok()
}

/// Grafana's webhook signature, when `intake.grafana_signature` asks for it.
pub struct Grafana {
    pub secret: Secret,
    pub header: String,
    pub timestamp_header: Option<String>,
}

/// How far a signed timestamp may be from now.
pub const MAX_SKEW_SECS: i64 = 300;

impl Grafana {
    /// Checks a Grafana body's signature: hex HMAC-SHA256 of
    /// `{timestamp}:{body}` (of the body alone when no timestamp header is
    /// configured), the timestamp within 5 minutes of `now`.
    pub fn verify(&self, headers: &axum::http::HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(signature) = header(&self.header) else {
            return Err(format!(
                "this Grafana webhook is not signed: laojun requires the {} header (intake.grafana_signature); set the contact point's HMAC secret",
                self.header
            ));
        };
        let timestamp = match &self.timestamp_header {
            None => None,
            Some(name) => {
                let Some(text) = header(name) else {
                    return Err(format!(
                        "the {name} header is missing (intake.grafana_signature.timestamp_header)"
                    ));
                };
                let sent: i64 = text.trim().parse().map_err(|_| format!("{name} is not a Unix time"))?;
                if (now - sent).abs() > MAX_SKEW_SECS {
                    return Err(format!("{name} is more than 5 minutes from laojun's clock"));
                }
                Some(text.trim().to_string())
            }
        };
        let signed = match &timestamp {
            Some(t) => matches(&self.secret, &[t.as_bytes(), b":", body], signature),
            None => matches(&self.secret, &[body], signature),
        };
        if signed {
            Ok(())
        } else {
            Err(format!(
                "the {} signature does not match the body: check intake.grafana_signature.secret",
                self.header
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256 HMAC test vector 2 of RFC 4231 (key "Jefe").
    #[test]
    fn a_known_hmac_matches_and_a_changed_one_does_not() {
        let key = Secret::new("Jefe");
        let mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(matches(&key, &[b"what do ya want ", b"for nothing?"], mac));
        assert!(!matches(&key, &[b"what do ya want for nothing!"], mac));
        assert!(!matches(
            &key,
            &[b"what do ya want for nothing?"],
            &mac.replace('5', "6")
        ));
        assert!(!matches(&key, &[b"x"], "not hex"));
    }
}
