//! GitHub App authentication end to end: the adapters' JWT signer and installation
//! tokens (`forgewatch_adapters::github::app`) against the fake GitHub's App endpoints,
//! over real HTTP. Time passes on a clock shared by the client and the fake
//! ([`FakeGitHub::advance_app_clock`]), so tokens age without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use forgewatch_adapters::github::app::{AppCredentials, AppError, Clock, InstallationTokens};
use forgewatch_adapters::http::ClientOptions;
use forgewatch_adapters::{RepoId, Secret};
use forgewatch_tests::fake_github::{
    FakeGitHub, OTHER_APP_PRIVATE_KEY, TEST_APP_PRIVATE_KEY, TEST_APP_PUBLIC_KEY,
};
use reqwest::StatusCode;
use serde_json::Value;

use super::fake_http::{client, json};

const APP_ID: u64 = 4242;

/// A wall clock `offset` seconds ahead of the real one, shared with the fake's App clock.
#[derive(Clone, Default)]
struct Shifted(Arc<AtomicU64>);

impl Shifted {
    fn clock(&self) -> Clock {
        let offset = self.0.clone();
        Arc::new(move || SystemTime::now() + Duration::from_secs(offset.load(Ordering::SeqCst)))
    }

    /// Moves both the client's clock and the fake's `by` ahead.
    fn advance(&self, gh: &FakeGitHub, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
        gh.advance_app_clock(by);
    }
}

async fn fake() -> FakeGitHub {
    let gh = FakeGitHub::start().await;
    gh.set_app(APP_ID, TEST_APP_PUBLIC_KEY);
    gh
}

fn credentials(app_id: u64, key: &str) -> AppCredentials {
    AppCredentials {
        app_id,
        private_key: Secret::new(key),
    }
}

fn tokens(gh: &FakeGitHub, clock: Clock) -> InstallationTokens {
    InstallationTokens::with_clock(
        &gh.api_url(),
        &credentials(APP_ID, TEST_APP_PRIVATE_KEY),
        &ClientOptions::default(),
        clock,
    )
    .expect("the test key is good")
}

fn repo(path: &str) -> RepoId {
    RepoId::parse(&format!("https://github.com/{path}")).expect("a repository URL")
}

/// `GET /repos/{full_name}/branches/main` with `token`; the status.
async fn branch_with(gh: &FakeGitHub, full_name: &str, token: &Secret) -> (StatusCode, Value) {
    let url = format!("{}/repos/{full_name}/branches/main", gh.api_url());
    let resp = client()
        .get(url)
        .header("authorization", format!("token {}", token.expose()))
        .send()
        .await
        .expect("the fake answers");
    (resp.status(), json(resp).await)
}

fn token_posts(gh: &FakeGitHub) -> usize {
    let posts = gh.requests().into_iter();
    posts
        .filter(|r| r.method == "POST" && r.path.ends_with("/access_tokens"))
        .count()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::test]
async fn a_token_is_minted_with_a_good_jwt_cached_and_accepted() {
    let gh = fake().await;
    gh.create_repo("acme/widget", "main");
    // Personal tokens are still checked as before; the installation's tokens pass too.
    gh.require_token(Some("ghp_personal"));
    let installation = gh.add_installation("acme");
    let app = tokens(&gh, Shifted::default().clock());

    let token = app.token(installation).await.expect("a token");
    assert!(token.expose().starts_with("ghs_"));
    for _ in 0..5 {
        assert_eq!(app.token(installation).await.expect("cached"), token);
    }
    assert_eq!(token_posts(&gh), 1, "one POST for six calls");
    for _ in 0..3 {
        let (status, body) = branch_with(&gh, "acme/widget", &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(gh.requests_with_token(token.expose()), 3);
    assert_eq!(gh.requests_of_installation(installation), 3);
    let (status, _) = branch_with(&gh, "acme/widget", &Secret::new("ghs_unknown")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The JWT sent: RS256, iat 60 s back, exp 9 min ahead, iss the App id as a string.
    let post = gh.requests().into_iter().find(|r| r.method == "POST");
    let authorization = post.and_then(|r| r.authorization).expect("a JWT was sent");
    let jwt = authorization.strip_prefix("Bearer ").expect("Bearer JWT");
    let header = jsonwebtoken::decode_header(jwt).expect("a JWT header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(jwt).expect("JWT claims");
    assert_eq!(claims["iss"], APP_ID.to_string());
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    let (iat, exp) = (iat.expect("iat"), exp.expect("exp"));
    assert_eq!(exp - iat, 600);
    assert!(iat.abs_diff(unix_now() - 60) <= 2, "iat {iat}");
    let issued = gh.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        (issued[0].installation, &issued[0].token),
        (installation, &token.expose().to_owned())
    );
}

#[tokio::test]
async fn a_token_is_renewed_before_it_comes_within_five_minutes_of_expiry() {
    let gh = fake().await;
    gh.create_repo("acme/widget", "main");
    let installation = gh.add_installation("acme");
    let time = Shifted::default();
    let app = tokens(&gh, time.clock());

    let first = app.token(installation).await.expect("a token");
    time.advance(&gh, Duration::from_secs(54 * 60));
    assert_eq!(app.token(installation).await.expect("6 min left"), first);
    time.advance(&gh, Duration::from_secs(61));
    let second = app.token(installation).await.expect("renewed");
    assert_ne!(second, first, "4 min 59 s left: renewed");
    assert_eq!(token_posts(&gh), 2);
    // Renewed ahead: the old token was still good, the new one has its hour.
    assert_eq!(
        branch_with(&gh, "acme/widget", &first).await.0,
        StatusCode::OK
    );
    let cached = app.cached(installation).await.expect("cached");
    let left = cached.expires_at.duration_since((time.clock())());
    assert!(
        matches!(left, Ok(l) if l > Duration::from_secs(59 * 60)),
        "{left:?}"
    );

    // Past its hour the old token is refused like GitHub; the new one is not.
    time.advance(&gh, Duration::from_secs(6 * 60));
    let (status, body) = branch_with(&gh, "acme/widget", &first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "Bad credentials");
    assert_eq!(
        branch_with(&gh, "acme/widget", &second).await.0,
        StatusCode::OK
    );
    assert_eq!(app.token(installation).await.expect("cached"), second);
    assert_eq!(token_posts(&gh), 2);
}

#[tokio::test]
async fn concurrent_callers_wait_for_one_renewal() {
    let gh = fake().await;
    let installation = gh.add_installation("acme");
    let time = Shifted::default();
    let app = Arc::new(tokens(&gh, time.clock()));

    for round in 1..=2 {
        gh.hold_responses();
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(
                    async move { app.token(installation).await.map_err(|e| e.to_string()) },
                )
            })
            .collect();
        assert!(gh.wait_for_in_flight(1, Duration::from_secs(10)).await);
        gh.release_all();
        let mut got = Vec::new();
        for caller in callers {
            got.push(caller.await.expect("no panic").expect("a token"));
        }
        assert!(got.windows(2).all(|w| w[0] == w[1]), "one token for all");
        assert_eq!(token_posts(&gh), round, "one renewal for 16 callers");
        assert_eq!(gh.max_in_flight(), 1);
        // Within five minutes of expiry: the next round renews.
        time.advance(&gh, Duration::from_secs(56 * 60));
    }
}

#[tokio::test]
async fn a_wrong_app_id_another_key_or_a_skewed_clock_are_refused_clearly() {
    let gh = fake().await;
    let installation = gh.add_installation("acme");
    let refused = |app_id, key: &str, skew: i64| {
        let clock: Clock = Arc::new(move || {
            let now = SystemTime::now();
            let by = Duration::from_secs(skew.unsigned_abs());
            if skew < 0 { now - by } else { now + by }
        });
        let app = InstallationTokens::with_clock(
            &gh.api_url(),
            &credentials(app_id, key),
            &ClientOptions::default(),
            clock,
        )
        .expect("a well-formed key");
        async move {
            match app.token(installation).await {
                Err(AppError::Refused { message, .. }) => message,
                other => panic!("expected Refused, got {other:?}"),
            }
        }
    };
    assert_eq!(
        refused(APP_ID + 1, TEST_APP_PRIVATE_KEY, 0).await,
        "Integration not found"
    );
    assert_eq!(
        refused(APP_ID, OTHER_APP_PRIVATE_KEY, 0).await,
        "A JSON web token could not be decoded"
    );
    let expired = refused(APP_ID, TEST_APP_PRIVATE_KEY, -20 * 60).await;
    assert!(
        expired.starts_with("'Expiration time' claim ('exp') must be"),
        "{expired}"
    );
    let ahead = refused(APP_ID, TEST_APP_PRIVATE_KEY, 5 * 60).await;
    assert_eq!(
        ahead,
        "'Expiration time' claim ('exp') is too far in the future"
    );
    assert_eq!(token_posts(&gh), 4);
    assert!(gh.issued_tokens().is_empty());

    // What the daemon reports: the URL, GitHub's words and what to check.
    let app = tokens(&gh, Shifted::default().clock());
    let err = app
        .token(installation + 100)
        .await
        .expect_err("no such installation");
    assert!(matches!(err, AppError::NotInstalled { .. }), "{err:?}");
    let wrong = InstallationTokens::new(
        &gh.api_url(),
        &credentials(APP_ID + 1, TEST_APP_PRIVATE_KEY),
        &ClientOptions::default(),
    )
    .expect("a key");
    let shown = wrong
        .token(installation)
        .await
        .expect_err("refused")
        .to_string();
    assert_eq!(
        shown,
        format!(
            "{}/app/installations/{installation}/access_tokens: GitHub refused the App's JWT \
             (HTTP 401: Integration not found); check the App id, the private key and the clock",
            gh.api_url()
        )
    );
}

#[tokio::test]
async fn installation_for_finds_and_remembers_each_owners_installation() {
    let gh = fake().await;
    for name in ["acme/a", "acme/b", "globex/c", "initech/d"] {
        gh.create_repo(name, "main");
    }
    let acme = gh.add_installation("acme");
    let globex = gh.add_installation("Globex");
    let app = tokens(&gh, Shifted::default().clock());
    let lookups = |gh: &FakeGitHub| gh.count_path_prefix("/repos/");

    assert_eq!(
        app.installation_for(&repo("acme/a")).await.expect("acme"),
        acme
    );
    assert_eq!(
        app.installation_for(&repo("acme/b")).await.expect("acme"),
        acme
    );
    assert_eq!(
        app.installation_for(&repo("globex/c"))
            .await
            .expect("globex"),
        globex
    );
    assert_eq!(lookups(&gh), 2, "one lookup per owner");
    assert_eq!(app.remembered("ACME"), Some(acme));
    let err = app
        .installation_for(&repo("initech/d"))
        .await
        .expect_err("not installed");
    assert!(matches!(err, AppError::NotInstalled { .. }), "{err:?}");
    assert_eq!(app.remembered("initech"), None);
    for _ in 0..3 {
        assert_eq!(
            app.installation_for(&repo("globex/c"))
                .await
                .expect("remembered"),
            globex
        );
    }
    assert_eq!(lookups(&gh), 3);

    // Each installation its own token, each counted on its own.
    let (a, g) = (
        app.token(acme).await.expect("a"),
        app.token(globex).await.expect("g"),
    );
    assert_ne!(a, g);
    assert_eq!(branch_with(&gh, "acme/a", &a).await.0, StatusCode::OK);
    assert_eq!(branch_with(&gh, "globex/c", &g).await.0, StatusCode::OK);
    assert_eq!(branch_with(&gh, "globex/c", &g).await.0, StatusCode::OK);
    assert_eq!(
        (
            gh.requests_of_installation(acme),
            gh.requests_of_installation(globex)
        ),
        (1, 2)
    );

    // The lookup takes a JWT, not a token.
    let url = format!("{}/repos/acme/a/installation", gh.api_url());
    let resp = client()
        .get(url)
        .header("authorization", format!("token {}", a.expose()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_key_and_the_tokens_are_never_formatted() {
    let gh = fake().await;
    let installation = gh.add_installation("acme");
    let key_body = TEST_APP_PRIVATE_KEY
        .lines()
        .nth(1)
        .expect("a PEM body line");
    let credentials = credentials(APP_ID, TEST_APP_PRIVATE_KEY);
    let app = tokens(&gh, Shifted::default().clock());
    let token = app.token(installation).await.expect("a token");
    let cached = app.cached(installation).await.expect("cached");
    let refused = InstallationTokens::new(
        &gh.api_url(),
        &AppCredentials {
            app_id: 1,
            ..credentials.clone()
        },
        &ClientOptions::default(),
    )
    .expect("a key")
    .token(installation)
    .await
    .expect_err("refused");
    let shown =
        format!("{credentials:?} {app:?} {cached:?} {token:?} {token} {refused:?} {refused}");
    assert!(!shown.contains(key_body), "{shown}");
    assert!(!shown.contains(token.expose()), "{shown}");
    assert!(!shown.contains("eyJ"), "no JWT either: {shown}");

    // A key that is no RSA key is a configuration error naming no part of it.
    let sent = gh.requests().len();
    for bad in [
        "not a key",
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----",
    ] {
        let err = InstallationTokens::new(
            &gh.api_url(),
            &AppCredentials {
                app_id: APP_ID,
                private_key: Secret::new(bad),
            },
            &ClientOptions::default(),
        )
        .expect_err("a bad key");
        assert!(matches!(err, AppError::BadKey(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("c2VjcmV0"));
    }
    assert_eq!(gh.requests().len(), sent, "a bad key sends nothing");
}

#[tokio::test]
async fn the_fake_checks_the_jwt_window_and_algorithm_like_github() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    let gh = fake().await;
    let installation = gh.add_installation("acme");
    let der = forgewatch_adapters::github::app::pem_der(TEST_APP_PRIVATE_KEY, "RSA PRIVATE KEY");
    let key = EncodingKey::from_rsa_der(&der.expect("PKCS#1 PEM"));
    let now = i64::try_from(unix_now()).expect("a 64-bit clock");
    let post = |jwt: String| {
        let url = format!(
            "{}/app/installations/{installation}/access_tokens",
            gh.api_url()
        );
        async move {
            let resp = client()
                .post(url)
                .header("authorization", format!("Bearer {jwt}"))
                .send()
                .await
                .expect("an answer");
            (resp.status(), json(resp).await["message"].clone())
        }
    };
    let rs256 = |iat: i64, exp: i64, iss: Value| {
        let claims = json!({"iat": now + iat, "exp": now + exp, "iss": iss});
        encode(&Header::new(Algorithm::RS256), &claims, &key).expect("signed")
    };
    let refused = |message: &str| (StatusCode::UNAUTHORIZED, json!(message));
    let issued = |(status, message): (StatusCode, Value)| {
        assert_eq!((status, message), (StatusCode::CREATED, Value::Null));
    };

    // Within the 60 s leeway, and `iss` as an integer: accepted.
    issued(post(rs256(30, 500, json!(APP_ID))).await);
    issued(post(rs256(-60, 540, json!(APP_ID.to_string()))).await);
    assert_eq!(
        post(rs256(120, 500, json!(APP_ID))).await,
        refused(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
        )
    );
    assert_eq!(
        post(rs256(-700, 60, json!(APP_ID))).await,
        refused("'Expiration time' claim ('exp') is too far in the future"),
        "valid for more than 10 minutes"
    );
    // HS256 with the public key as its secret (algorithm confusion) is no RS256 JWT.
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID}),
        &EncodingKey::from_secret(TEST_APP_PUBLIC_KEY.as_bytes()).expect("a secret"),
    )
    .expect("signed");
    assert_eq!(
        post(hs256).await,
        refused("A JSON web token could not be decoded")
    );
    assert_eq!(
        post("ghp_personal".to_owned()).await,
        refused("A JSON web token could not be decoded")
    );
    assert_eq!(gh.issued_tokens().len(), 2);
}
