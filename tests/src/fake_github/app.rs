//! GitHub App authentication on the fake GitHub (`forge-apis.md` §7.3), as the real API
//! does it: the test gives the App's id and public key ([`FakeGitHub::set_app`]) and
//! installs it on owners ([`FakeGitHub::add_installation`]); the `/app/…` endpoints and
//! `GET /repos/{o}/{r}/installation` take only a JWT, verified (RS256, the signature
//! against the public key, `iss` = the App id, `exp − iat` ≤ 600 s, not expired, `iat`
//! at most 60 s ahead) and refused 401 `{"message": …}` like GitHub; `POST
//! /app/installations/{id}/access_tokens` issues `ghs_…` tokens that live as long as the
//! test says ([`FakeGitHub::set_installation_token_lifetime`]) and are accepted on every
//! other endpoint until they expire (then 401 `Bad credentials`). An installation's
//! tokens share its budget; requests are counted per token and per installation. The
//! App's clock can be moved ahead ([`FakeGitHub::advance_app_clock`]) to let tokens age
//! without waiting. Without [`FakeGitHub::set_app`] nothing here answers anything.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::http::{Reply, error};
use super::{FakeGitHub, GhState};
use crate::format::{pct_decode, rfc3339};

/// The test App's private key (PKCS#1 PEM, test-only: `tests/fixtures/github-app/`).
pub const TEST_APP_PRIVATE_KEY: &str = include_str!("../../fixtures/github-app/app.pem");
/// Its public key, what the fake verifies JWTs with.
pub const TEST_APP_PUBLIC_KEY: &str = include_str!("../../fixtures/github-app/app.pub.pem");
/// Another App's private key: JWTs signed with it are forged as far as the fake knows.
pub const OTHER_APP_PRIVATE_KEY: &str = include_str!("../../fixtures/github-app/other.pem");

const DOCS: &str = "https://docs.github.com/rest";
const NOT_DECODED: &str = "A JSON web token could not be decoded";
/// GitHub refuses a JWT valid for longer than this.
const MAX_JWT_LIFETIME: u64 = 600;
/// How far in the future `iat` may be.
const IAT_LEEWAY: u64 = 60;

/// One installation token as the fake issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub installation: u64,
    pub token: String,
    /// Unix seconds, on the App's clock.
    pub expires_at: u64,
}

/// The App, its installations and tokens.
pub(super) struct Apps {
    app: Option<(u64, DecodingKey)>,
    /// Owner (lower-cased) by installation id.
    installations: BTreeMap<u64, String>,
    issued: Vec<IssuedToken>,
    lifetime: Duration,
    offset: Duration,
    per_token: HashMap<String, u64>,
    per_installation: HashMap<u64, u64>,
}

impl Default for Apps {
    fn default() -> Self {
        Apps {
            app: None,
            installations: BTreeMap::new(),
            issued: Vec::new(),
            lifetime: Duration::from_secs(3600),
            offset: Duration::ZERO,
            per_token: HashMap::new(),
            per_installation: HashMap::new(),
        }
    }
}

/// What an `Authorization` token is to the App part of the fake.
pub(super) enum TokenCheck {
    /// Not a token this fake issued: the usual rules apply.
    Other,
    /// A live installation token of this installation.
    Live(u64),
    /// An installation token that has expired.
    Expired,
}

impl Apps {
    /// Unix seconds on the App's clock.
    fn now(&self) -> u64 {
        (SystemTime::now() + self.offset)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Classifies `token` and counts a live one's request.
    pub(super) fn check_token(&mut self, token: Option<&str>) -> TokenCheck {
        let Some(token) = token else {
            return TokenCheck::Other;
        };
        let now = self.now();
        let Some(issued) = self.issued.iter().find(|t| t.token == token) else {
            return TokenCheck::Other;
        };
        if issued.expires_at <= now {
            return TokenCheck::Expired;
        }
        let installation = issued.installation;
        *self.per_token.entry(token.to_owned()).or_default() += 1;
        *self.per_installation.entry(installation).or_default() += 1;
        TokenCheck::Live(installation)
    }

    /// `None` when the JWT is good, else GitHub's 401.
    fn refuse_jwt(&self, authorization: Option<&str>) -> Option<Reply> {
        let (app_id, key) = self.app.as_ref()?;
        let refused = |message: &str| Some(error(401, message, DOCS));
        let Some(jwt) = authorization.and_then(|a| {
            let (scheme, rest) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        }) else {
            return refused(NOT_DECODED);
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let Ok(data) = jsonwebtoken::decode::<Value>(jwt, key, &validation) else {
            // A bad signature, another algorithm, not a JWT at all.
            return refused(NOT_DECODED);
        };
        let claims = data.claims;
        let iss = match &claims["iss"] {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
            return refused("'Issued at' and 'Expiration time' claims must be numeric values");
        };
        let now = self.now();
        if iss != Some(*app_id) {
            refused("Integration not found")
        } else if exp <= now {
            refused(
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
            )
        } else if exp.saturating_sub(iat) > MAX_JWT_LIFETIME || exp > now + MAX_JWT_LIFETIME {
            refused("'Expiration time' claim ('exp') is too far in the future")
        } else if iat > now + IAT_LEEWAY {
            refused(
                "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
            )
        } else {
            None
        }
    }
}

impl FakeGitHub {
    /// From now on the fake knows GitHub App `app_id` with this public key (PEM,
    /// `BEGIN PUBLIC KEY`), and answers the App endpoints.
    pub fn set_app(&self, app_id: u64, public_key_pem: &str) {
        use base64::Engine;
        let armoured: String = public_key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(armoured)
            .expect("fake GitHub: the App's public key is not PEM");
        // aws-lc reads SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`) and PKCS#1 alike.
        let key = DecodingKey::from_rsa_der(&der);
        self.lock().apps.app = Some((app_id, key));
    }

    /// Installs the App on `owner` (every repository of it); returns the installation id.
    pub fn add_installation(&self, owner: &str) -> u64 {
        let mut st = self.lock();
        let id = st.fresh_id();
        st.apps.installations.insert(id, owner.to_lowercase());
        id
    }

    /// How long the installation tokens issued from now on live (default 1 h, like GitHub).
    pub fn set_installation_token_lifetime(&self, lifetime: Duration) {
        self.lock().apps.lifetime = lifetime;
    }

    /// Moves the App's clock (JWT checks, token expiry) `by` ahead of the real one.
    pub fn advance_app_clock(&self, by: Duration) {
        self.lock().apps.offset += by;
    }

    /// Every installation token issued so far, in order.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.lock().apps.issued.clone()
    }

    /// Requests accepted with installation token `token` (App endpoints excluded).
    pub fn requests_with_token(&self, token: &str) -> u64 {
        self.lock().apps.per_token.get(token).copied().unwrap_or(0)
    }

    /// Requests accepted with any token of installation `id` (App endpoints excluded).
    pub fn requests_of_installation(&self, id: u64) -> u64 {
        let st = self.lock();
        st.apps.per_installation.get(&id).copied().unwrap_or(0)
    }
}

impl GhState {
    /// The answer of an App endpoint (JWT only), or `None` for every other request and
    /// for all of them while no App is set.
    pub(super) fn app_endpoint(
        &mut self,
        method: &Method,
        path: &str,
        authorization: Option<&str>,
    ) -> Option<Reply> {
        self.apps.app.as_ref()?;
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let owner = match (method, segments.as_slice()) {
            (&Method::POST, ["app", "installations", id, "access_tokens"]) => {
                let id = id.parse::<u64>().ok();
                return Some(self.refuse_jwt_or(authorization, |st| st.issue_token(id)));
            }
            (&Method::GET, ["repos", owner, name, "installation"]) => {
                format!("{}/{}", pct_decode(owner), pct_decode(name))
            }
            (_, ["app", ..]) => return Some(error(404, "Not Found", DOCS)),
            _ => return None,
        };
        Some(self.refuse_jwt_or(authorization, |st| st.installation_of(&owner)))
    }

    fn refuse_jwt_or(
        &mut self,
        authorization: Option<&str>,
        answer: impl FnOnce(&mut GhState) -> Reply,
    ) -> Reply {
        match self.apps.refuse_jwt(authorization) {
            Some(refused) => refused,
            None => answer(self),
        }
    }

    fn issue_token(&mut self, id: Option<u64>) -> Reply {
        let Some(id) = id.filter(|id| self.apps.installations.contains_key(id)) else {
            return error(404, "Not Found", DOCS);
        };
        let expires_at = self.apps.now() + self.apps.lifetime.as_secs();
        let token = format!("ghs_{}", &self.fresh_sha()[..36]);
        self.apps.issued.push(IssuedToken {
            installation: id,
            token: token.clone(),
            expires_at,
        });
        json_reply(
            201,
            json!({
                "token": token,
                "expires_at": rfc3339(expires_at),
                "permissions": {"metadata": "read", "pull_requests": "read", "statuses": "write"},
                "repository_selection": "all",
            }),
        )
    }

    fn installation_of(&self, full_name: &str) -> Reply {
        let owner = full_name
            .split('/')
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let found = self.repos.contains_key(&full_name.to_lowercase());
        let installation = self.apps.installations.iter().find(|(_, o)| **o == owner);
        match (found, installation) {
            (true, Some((id, owner))) => json_reply(
                200,
                json!({
                    "id": id,
                    "account": {"login": owner, "type": "Organization"},
                    "app_id": self.apps.app.as_ref().map(|(app, _)| *app),
                    "repository_selection": "all",
                }),
            ),
            _ => error(404, "Not Found", DOCS),
        }
    }
}

fn json_reply(status: u16, value: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json; charset=utf-8".to_owned())],
        body: serde_json::to_vec(&value).unwrap_or_default(),
    }
}
