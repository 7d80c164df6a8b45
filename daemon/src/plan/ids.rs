//! Newtypes for the identities the daemon passes around, so a build key is never
//! confused with a fingerprint or a delivery id.

use std::fmt;

use forgewatch_adapters::RepoId;

/// `WORKSPACE/mainline` or `WORKSPACE/pr/HOST/PATH/NUMBER` (SPEC §1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildKey(String);

impl BuildKey {
    pub fn mainline(workspace: &str) -> BuildKey {
        BuildKey(format!("{workspace}/mainline"))
    }

    pub fn pull_request(workspace: &str, repo: &RepoId, number: u64) -> BuildKey {
        BuildKey(format!("{workspace}/pr/{repo}/{number}"))
    }

    /// Every pull-request key of `workspace` on `repo` starts with this.
    pub fn pull_request_prefix(workspace: &str, repo: &RepoId) -> String {
        format!("{workspace}/pr/{repo}/")
    }

    /// A key read back from the state store.
    pub fn from_stored(key: String) -> BuildKey {
        BuildKey(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The workspace the build belongs to (the key's first segment).
    pub fn workspace(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
}

impl fmt::Display for BuildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `sha256:` + hex SHA-256 of a build's canonical inputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of_bytes(canonical: &[u8]) -> Fingerprint {
        use sha2::{Digest, Sha256};
        Fingerprint(format!("sha256:{}", hex::encode(Sha256::digest(canonical))))
    }

    pub fn from_stored(value: String) -> Fingerprint {
        Fingerprint(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A delivery's UUID: derived from build key and fingerprint, so every retry of the
/// same delivery carries the same id and a receiver can de-duplicate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryId(uuid::Uuid);

/// The UUIDv5 namespace of forgewatch delivery ids (fixed forever).
const DELIVERY_NAMESPACE: uuid::Uuid = uuid::uuid!("5b1e0c3e-8f4a-5d2b-9c61-0f6f6a7e2d41");

impl DeliveryId {
    /// A new random id: a manual trigger is a delivery of its own.
    pub fn fresh() -> DeliveryId {
        DeliveryId(uuid::Uuid::new_v4())
    }

    pub fn derive(key: &BuildKey, fingerprint: &Fingerprint) -> DeliveryId {
        let name = format!("{}\n{}", key.as_str(), fingerprint.as_str());
        DeliveryId(uuid::Uuid::new_v5(&DELIVERY_NAMESPACE, name.as_bytes()))
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_spec() {
        let repo = RepoId::parse("git@github.com:Acme/Repo.git").unwrap();
        assert_eq!(BuildKey::mainline("ws").as_str(), "ws/mainline");
        assert_eq!(
            BuildKey::pull_request("ws", &repo, 12).as_str(),
            "ws/pr/github.com/acme/repo/12"
        );
        assert!(
            BuildKey::pull_request("ws", &repo, 12)
                .as_str()
                .starts_with(&BuildKey::pull_request_prefix("ws", &repo))
        );
    }

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let k = BuildKey::mainline("ws");
        let a = Fingerprint::of_bytes(b"a");
        let b = Fingerprint::of_bytes(b"b");
        assert_eq!(DeliveryId::derive(&k, &a), DeliveryId::derive(&k, &a));
        assert_ne!(DeliveryId::derive(&k, &a), DeliveryId::derive(&k, &b));
        assert_ne!(
            DeliveryId::derive(&k, &a),
            DeliveryId::derive(&BuildKey::mainline("other"), &a)
        );
        assert_eq!(
            a.as_str(),
            "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
    }
}
