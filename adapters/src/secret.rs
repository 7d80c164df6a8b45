//! A secret string (token, password, webhook secret) that cannot leak by accident:
//! its `Debug` and `Display` print a placeholder, and the only way to the value is
//! [`Secret::expose`], which is greppable.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value. Call sites are the few places that put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, non-reversible digest, used to partition caches per credential
    /// (GitHub ETags are per token) without storing the token.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("ghp_supersecret");
        assert!(!format!("{s:?} {s} {s:#?}").contains("supersecret"));
        assert_eq!(s.expose(), "ghp_supersecret");
        assert_eq!(s.fingerprint().len(), 16);
        assert!(!s.fingerprint().contains("supersecret"));
    }
}
