//! Receiving a forge's webhooks: each forge signs its hooks its own way and names
//! the repository at its own place in the payload. A [`WebhookReceiver`] per forge
//! (`github::hooks`, `gitlab::hooks`) knows both, so the daemon's HTTP endpoint
//! handles every forge the same way: given the request and a configured secret, a
//! receiver says whether the secret signed it and which repository it is about.
//!
//! A hook is only a hint to poll that repository now (SPEC §9); nothing else of
//! the payload is read. Secrets are compared in constant time and never printed.

use reqwest::header::HeaderMap;

use crate::Secret;
use crate::results::{ReportError, ReportedResult};

/// Why a webhook is refused. The messages are the JSON errors the daemon answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// No signature, or not made with the secret tried (HTTP 401).
    #[error("missing or invalid webhook signature")]
    Unsigned,
    /// Signed, but the body is not JSON (HTTP 400).
    #[error("the body is not JSON")]
    NotJson,
}

/// What identifies one delivery of a webhook: the same when the forge delivers it
/// again (a retry, a "redeliver" button), so a redelivery can be told apart from
/// a new event. Only a visible ASCII string of at most 128 bytes is taken as one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HookDeliveryId(String);

impl HookDeliveryId {
    /// The longest id taken: forges send UUIDs (36 bytes).
    pub const MAX_LEN: usize = 128;

    pub fn parse(value: &[u8]) -> Option<HookDeliveryId> {
        let id = std::str::from_utf8(value).ok()?;
        (!id.is_empty() && id.len() <= Self::MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| HookDeliveryId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reads a CI result out of a hook's body.
pub type ResultReader = fn(&[u8]) -> Result<ReportedResult, ReportError>;

/// One forge's webhooks.
pub trait WebhookReceiver: Send + Sync {
    /// The name the forge's hooks are posted under: `/hooks/{endpoint}`.
    fn endpoint(&self) -> &'static str;

    /// The headers that carry a delivery's id, by preference: the first present
    /// is the id. The same on a redelivery of the same event.
    fn delivery_headers(&self) -> &'static [&'static str];

    /// The id of this delivery, if the forge sent one (it is not signed: only
    /// trust it for a request [`Self::verify`] accepted).
    fn delivery_id(&self, headers: &HeaderMap) -> Option<HookDeliveryId> {
        let header = self
            .delivery_headers()
            .iter()
            .find_map(|name| headers.get(*name))?;
        HookDeliveryId::parse(header.as_bytes())
    }

    /// Whether the request is signed with `secret` (compared in constant time).
    fn verify(&self, headers: &HeaderMap, body: &[u8], secret: &Secret) -> bool;

    /// The path of the repository a (verified) payload is about, as written.
    fn repository_path(&self, payload: &serde_json::Value) -> Option<String>;

    /// When the headers say the request carries a CI's result rather than a
    /// repository change (GitLab's `Pipeline Hook`), what reads its (verified) body.
    fn result_reader(&self, _headers: &HeaderMap) -> Option<ResultReader> {
        None
    }

    /// A request verified with `secret`, then read: the repository path it names
    /// (`None` when it names none). The body is parsed only once verified.
    fn receive(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secret: &Secret,
    ) -> Result<Option<String>, HookError> {
        if !self.verify(headers, body, secret) {
            return Err(HookError::Unsigned);
        }
        let payload: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| HookError::NotJson)?;
        Ok(self.repository_path(&payload))
    }
}

/// The receivers of every forge this crate talks to, whether configured or not:
/// the daemon serves one endpoint for each.
pub static RECEIVERS: [&dyn WebhookReceiver; 2] = [
    &crate::github::hooks::GitHubHooks,
    &crate::gitlab::hooks::GitLabHooks,
];

/// `a == b` in time that depends only on their lengths.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_endpoint_per_forge() {
        let mut endpoints: Vec<_> = RECEIVERS.iter().map(|r| r.endpoint()).collect();
        endpoints.sort_unstable();
        endpoints.dedup();
        assert_eq!(endpoints, ["github", "gitlab"]);
    }

    #[test]
    fn delivery_ids() {
        let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
        assert_eq!(
            HookDeliveryId::parse(id.as_bytes()).map(|i| i.as_str().to_owned()),
            Some(id.to_owned())
        );
        let long = "x".repeat(HookDeliveryId::MAX_LEN + 1);
        for refused in [&b""[..], b"a b", b"\xff", long.as_bytes()] {
            assert_eq!(HookDeliveryId::parse(refused), None, "{refused:?}");
        }
        assert!(HookDeliveryId::parse(&long.as_bytes()[1..]).is_some());
    }

    #[test]
    fn comparisons() {
        assert!(same_bytes(b"secret", b"secret"));
        assert!(!same_bytes(b"secret", b"secreT"));
        assert!(!same_bytes(b"secret", b"secret2"));
        assert!(!same_bytes(b"", b"x"));
    }
}
