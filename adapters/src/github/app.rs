//! GitHub App credentials (SPEC §15, `forge-apis.md` §7.3): an App authenticates
//! with a JWT it signs with its private key (RS256, `iss` = the App id, `iat` 60 s
//! in the past, `exp` 9 min ahead), and exchanges it per installation for an
//! installation token (1 h) that the rest of the client sends like any token.
//!
//! [`InstallationTokens`] keeps one token per installation, hands out only tokens
//! that still have more than the renewal margin (5 min) to live, renews ahead of
//! that with one renewal in flight per installation (concurrent callers wait for
//! it), and finds and remembers the installation of each repository's owner. The
//! key, the JWTs and the tokens are [`Secret`]s: no `Debug`, `Display` or error
//! here carries them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::forge::ForgeError;
use crate::http::{ClientOptions, error_chain, one_line, read_body_at_most, transport_error};
use crate::{RepoId, Secret};

/// How far in the past `iat` is put (GitHub's advice against clock drift).
const IAT_BACKDATE: Duration = Duration::from_secs(60);
/// How long a JWT is valid after now (GitHub accepts at most 10 min after `iat`).
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// A token with less than this left is renewed before it is handed out.
pub const RENEW_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Largest answer read from an App endpoint.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The wall clock the JWTs and token expiries are read on (`SystemTime::now` but in tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What a GitHub App authenticates with.
#[derive(Clone, Debug)]
pub struct AppCredentials {
    pub app_id: u64,
    /// The App's private key as GitHub hands it out: PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`).
    pub private_key: Secret,
}

/// Why an App could not authenticate: each variant is something the daemon acts on.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The private key is not a usable RSA key: a configuration error.
    #[error("the GitHub App's private key is not an RSA private key in PEM: {0}")]
    BadKey(String),
    /// GitHub refused the JWT (401): a wrong App id, another App's key, or a clock so
    /// far off that the JWT is expired or not valid yet.
    #[error(
        "{url}: GitHub refused the App's JWT (HTTP 401: {message}); check the App id, the private key and the clock"
    )]
    Refused { url: String, message: String },
    /// The App is not installed on that account or repository (404).
    #[error("{url}: the GitHub App is not installed there (HTTP 404: {message})")]
    NotInstalled { url: String, message: String },
    /// Transport, timeout, 5xx, rate limit or an answer that makes no sense.
    #[error(transparent)]
    Forge(#[from] ForgeError),
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

/// Signs the App's JWTs.
pub struct AppSigner {
    app_id: u64,
    key: EncodingKey,
    clock: Clock,
}

impl std::fmt::Debug for AppSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSigner")
            .field("app_id", &self.app_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl AppSigner {
    /// Reads the key and signs one JWT with it, so a bad key fails here, not later.
    pub fn new(credentials: &AppCredentials, clock: Clock) -> Result<AppSigner, AppError> {
        let pem = credentials.private_key.expose();
        let Some(der) = pem_der(pem, "RSA PRIVATE KEY") else {
            return Err(AppError::BadKey(
                if pem.contains("-----BEGIN PRIVATE KEY-----") {
                    "a PKCS#8 key (BEGIN PRIVATE KEY); GitHub hands out PKCS#1 (BEGIN RSA PRIVATE KEY): \
                 convert it with `openssl rsa -traditional -in KEY -out KEY.pem`"
                    .to_owned()
                } else {
                    "no `-----BEGIN RSA PRIVATE KEY-----` block in base64".to_owned()
                },
            ));
        };
        let key = EncodingKey::from_rsa_der(&der);
        let signer = AppSigner {
            app_id: credentials.app_id,
            key,
            clock,
        };
        signer.jwt()?;
        Ok(signer)
    }

    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// A fresh JWT: `iat` = now − 60 s, `exp` = now + 9 min, `iss` = the App id.
    pub fn jwt(&self) -> Result<Secret, AppError> {
        let now = unix((self.clock)());
        let claims = Claims {
            iat: now.saturating_sub(IAT_BACKDATE.as_secs()),
            exp: now + JWT_LIFETIME.as_secs(),
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| AppError::BadKey(e.to_string()))
    }
}

/// An installation token and when GitHub says it expires.
#[derive(Clone, Debug)]
pub struct InstallationToken {
    pub token: Secret,
    pub expires_at: SystemTime,
}

#[derive(Deserialize)]
struct AccessTokenAnswer {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct InstallationAnswer {
    id: u64,
}

/// The installation tokens of one App on one GitHub (api.github.com or an Enterprise).
pub struct InstallationTokens {
    http: reqwest::Client,
    api_url: url::Url,
    signer: AppSigner,
    clock: Clock,
    margin: Duration,
    /// One slot per installation; its lock is held while the token is renewed.
    tokens: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Option<InstallationToken>>>>>,
    /// Installation id by owner (lower-cased).
    installations: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for InstallationTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationTokens")
            .field("api_url", &self.api_url.as_str())
            .field("signer", &self.signer)
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl InstallationTokens {
    /// `api_url`: `https://api.github.com` or `https://HOST/api/v3`.
    pub fn new(
        api_url: &str,
        credentials: &AppCredentials,
        options: &ClientOptions,
    ) -> Result<InstallationTokens, AppError> {
        InstallationTokens::with_clock(api_url, credentials, options, Arc::new(SystemTime::now))
    }

    /// [`InstallationTokens::new`] on another clock (tests).
    pub fn with_clock(
        api_url: &str,
        credentials: &AppCredentials,
        options: &ClientOptions,
        clock: Clock,
    ) -> Result<InstallationTokens, AppError> {
        let api =
            url::Url::parse(api_url.trim_end_matches('/')).map_err(|e| ForgeError::Transport {
                url: api_url.to_owned(),
                message: format!("invalid API URL: {e}"),
            })?;
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            // The JWT goes to the API and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ForgeError::Transport {
                url: api_url.to_owned(),
                message: format!("cannot build the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(InstallationTokens {
            http,
            api_url: api,
            signer: AppSigner::new(credentials, clock.clone())?,
            clock,
            margin: RENEW_MARGIN,
            tokens: Mutex::new(HashMap::new()),
            installations: Mutex::new(HashMap::new()),
        })
    }

    /// Renews tokens with less than `margin` left (default [`RENEW_MARGIN`]).
    pub fn with_margin(mut self, margin: Duration) -> InstallationTokens {
        self.margin = margin;
        self
    }

    pub fn app_id(&self) -> u64 {
        self.signer.app_id()
    }

    /// A token of installation `id` with more than the margin to live: the cached one,
    /// else a new one (callers that arrive during a renewal wait for it). A token that
    /// GitHub issues with less than the margin is handed out once, never again.
    pub async fn token(&self, id: u64) -> Result<Secret, AppError> {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        let now = (self.clock)();
        if let Some(cached) = slot.as_ref()
            && cached.expires_at > now + self.margin
        {
            return Ok(cached.token.clone());
        }
        let fresh = self.mint(id).await?;
        if fresh.expires_at <= now + self.margin {
            tracing::warn!(
                installation = id,
                "GitHub issued an installation token that expires within the renewal margin"
            );
        }
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }

    /// The cached token of installation `id`, whatever it has left (none before the first
    /// [`InstallationTokens::token`]).
    pub async fn cached(&self, id: u64) -> Option<InstallationToken> {
        self.slot(id).lock().await.clone()
    }

    /// Forgets the token of installation `id` (GitHub answered 401 to it): the next
    /// [`InstallationTokens::token`] gets a new one.
    pub async fn forget(&self, id: u64) {
        *self.slot(id).lock().await = None;
    }

    fn slot(&self, id: u64) -> Arc<tokio::sync::Mutex<Option<InstallationToken>>> {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.entry(id).or_default().clone()
    }

    /// The installation of `repo`'s owner, found with `GET /repos/{o}/{r}/installation`
    /// once per owner and remembered.
    pub async fn installation_for(&self, repo: &RepoId) -> Result<u64, AppError> {
        let path = repo.path();
        let owner = path.split('/').next().unwrap_or(path).to_lowercase();
        if let Some(id) = self.remembered(&owner) {
            return Ok(id);
        }
        let mut segments = vec!["repos"];
        segments.extend(path.split('/'));
        segments.push("installation");
        let url = self.url(&segments);
        let body = self.send(reqwest::Method::GET, &url).await?;
        let answer: InstallationAnswer = decode(&url, &body)?;
        if let Ok(mut map) = self.installations.lock() {
            map.insert(owner, answer.id);
        }
        tracing::debug!(installation = answer.id, repo = %repo, "found the App's installation");
        Ok(answer.id)
    }

    /// The installation remembered for `owner`, without asking GitHub.
    pub fn remembered(&self, owner: &str) -> Option<u64> {
        let map = self.installations.lock().ok()?;
        map.get(&owner.to_lowercase()).copied()
    }

    /// `POST /app/installations/{id}/access_tokens`.
    async fn mint(&self, id: u64) -> Result<InstallationToken, AppError> {
        let id_text = id.to_string();
        let url = self.url(&["app", "installations", &id_text, "access_tokens"]);
        let body = self.send(reqwest::Method::POST, &url).await?;
        let answer: AccessTokenAnswer = decode(&url, &body)?;
        let expires_at =
            humantime::parse_rfc3339_weak(&answer.expires_at).map_err(|e| ForgeError::Decode {
                url: url.clone(),
                message: format!("expires_at is not a time: {e}"),
            })?;
        tracing::debug!(installation = id, "new installation token");
        Ok(InstallationToken {
            token: Secret::new(answer.token),
            expires_at,
        })
    }

    /// One request authenticated with a fresh JWT; the body of a 2xx.
    async fn send(&self, method: reqwest::Method, url: &str) -> Result<Vec<u8>, AppError> {
        let jwt = self.signer.jwt()?;
        let response = self
            .http
            .request(method, url)
            .header("Authorization", format!("Bearer {}", jwt.expose()))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| transport_error(url, e))?;
        let status = response.status().as_u16();
        let body = read_body_at_most(url, response, MAX_BODY_BYTES).await?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = error_message(&body).replace(jwt.expose(), "<redacted>");
        let url = url.to_owned();
        Err(match status {
            401 => AppError::Refused { url, message },
            404 => AppError::NotInstalled { url, message },
            _ => AppError::Forge(ForgeError::Http {
                url,
                status,
                message,
            }),
        })
    }

    fn url(&self, segments: &[&str]) -> String {
        let mut url = self.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.to_string()
    }
}

/// The DER inside the PEM block labelled `label` (RFC 7468), if there is one.
pub fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let armoured: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(armoured)
        .ok()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn decode<T: for<'de> Deserialize<'de>>(url: &str, body: &[u8]) -> Result<T, ForgeError> {
    serde_json::from_slice(body).map_err(|e| crate::decode::decode_error(url, &e))
}

/// GitHub's `message`, or the start of the body, on one line.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => one_line(&m.message, 200),
        Err(_) => one_line(&String::from_utf8_lossy(body), 200),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_is_no_rsa_pem_is_a_configuration_error_without_the_key() {
        let credentials = AppCredentials {
            app_id: 1,
            private_key: Secret::new(
                "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
            ),
        };
        let err = AppSigner::new(&credentials, Arc::new(SystemTime::now)).unwrap_err();
        assert!(matches!(err, AppError::BadKey(_)), "{err:?}");
        let shown = format!("{err} {err:?} {credentials:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
}
