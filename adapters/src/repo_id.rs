//! Repository identity: the normalised `(host, path)` that makes
//! `git@github.com:Acme/Repo.git` and `https://github.com/acme/repo` one repository
//! (SPEC §1). Every comparison between repositories in forgewatch goes through it.

use std::fmt;

/// A normalised repository identity. Construct it with [`RepoId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoId {
    host: String,
    path: String,
}

/// Why a string is not a repository URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoIdError {
    #[error(
        "`{0}` is not a repository URL (expected a scheme such as https:// or the scp form user@host:path)"
    )]
    NotAUrl(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}` has no repository path")]
    NoPath(String),
}

impl RepoId {
    /// Parses and normalises a clone or web URL: scp-like `user@host:path` is read as
    /// `ssh://user@host/path`; host lower-cased, leading `www.` dropped; path lower-cased,
    /// duplicate slashes collapsed, leading `/` and trailing `.git` removed.
    pub fn parse(url: &str) -> Result<RepoId, RepoIdError> {
        let url = url.trim();
        let authority_and_path = if let Some((_, rest)) = url.split_once("://") {
            rest
        } else if let Some((user_host, path)) = scp_split(url) {
            return Self::from_parts(url, user_host, path);
        } else {
            return Err(RepoIdError::NotAUrl(url.to_owned()));
        };
        let (authority, path) = authority_and_path
            .split_once('/')
            .unwrap_or((authority_and_path, ""));
        Self::from_parts(url, authority, path)
    }

    fn from_parts(original: &str, authority: &str, path: &str) -> Result<RepoId, RepoIdError> {
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        // The port is dropped: ssh on :2222 and https on :443 reach the same repository.
        let host = match host_port.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host_port,
        };
        let host = host.to_ascii_lowercase();
        let host = host.strip_prefix("www.").unwrap_or(&host).to_owned();
        if host.is_empty() {
            return Err(RepoIdError::NoHost(original.to_owned()));
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut path = path
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
            .to_lowercase();
        if let Some(stripped) = path.strip_suffix(".git") {
            path = stripped.trim_end_matches('/').to_owned();
        }
        if path.is_empty() {
            return Err(RepoIdError::NoPath(original.to_owned()));
        }
        Ok(RepoId { host, path })
    }

    /// Builds an identity from an already split host and path (e.g. from a forge API
    /// answer), normalising both.
    pub fn from_host_path(host: &str, path: &str) -> Result<RepoId, RepoIdError> {
        Self::from_parts(&format!("{host}/{path}"), host, path)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `owner/repo` on GitHub, `group/sub/project` on GitLab; lower-cased.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `https://HOST/PATH`: the repository's web URL as sent in trigger payloads.
    pub fn web_url(&self) -> String {
        format!("https://{}/{}", self.host, self.path)
    }
}

/// `user@host:path` (no scheme, a colon before the first slash).
fn scp_split(url: &str) -> Option<(&str, &str)> {
    let (before, after) = url.split_once(':')?;
    if before.contains('/') || !before.contains('@') || after.starts_with("//") {
        return None;
    }
    Some((before, after))
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples_are_one_repository() {
        let expected = RepoId::from_host_path("github.com", "acme/repo").unwrap();
        for url in [
            "git@github.com:Acme/Repo.git",
            "https://www.github.com/acme//repo",
            "git://GITHUB.com/acme/repo",
            "https://github.com/acme/repo/",
            "ssh://git@github.com/acme/repo.git",
            "https://user@github.com:443/Acme/Repo.git",
            "git@github.com:/acme/repo.git",
        ] {
            let id = RepoId::parse(url).unwrap();
            assert_eq!(id.host(), "github.com", "{url}");
            assert_eq!(id.path(), "acme/repo", "{url}");
            assert_eq!(id, expected);
        }
        assert_eq!(expected.to_string(), "github.com/acme/repo");
        assert_eq!(expected.web_url(), "https://github.com/acme/repo");
    }

    #[test]
    fn gitlab_subgroups_keep_their_depth() {
        let id = RepoId::parse("https://gitlab.example.org/Sensors/drivers/lidar-x.git").unwrap();
        assert_eq!(id.path(), "sensors/drivers/lidar-x");
    }

    #[test]
    fn rejects_what_is_not_a_url() {
        assert!(matches!(
            RepoId::parse("www.github.com/foo/bar"),
            Err(RepoIdError::NotAUrl(_))
        ));
        assert!(matches!(
            RepoId::parse("https://github.com/"),
            Err(RepoIdError::NoPath(_))
        ));
        assert!(matches!(
            RepoId::parse("https:///acme/repo"),
            Err(RepoIdError::NoHost(_))
        ));
    }
}
