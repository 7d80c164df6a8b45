//! Fake CI receivers: a Buildbot `base` change hook and a signed JSON webhook endpoint.
//!
//! forgewatch's job ends with a delivery to CI, so tests need a receiver that is as strict
//! as the real one (`forge-apis.md` §3, §4), can be told to fail, and records exactly what
//! arrived. The `fake-ci` binary reuses it for the README walkthrough.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::watch;
use url::form_urlencoded;

/// Which receiver a delivery arrived at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /change_hook/base`
    Buildbot,
    /// `POST /hook`
    Webhook,
}

/// One request accepted by a receiver.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub endpoint: Endpoint,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Decoded urlencoded fields, query string first (Buildbot); empty for the webhook.
    pub form: Vec<(String, String)>,
    /// The parsed body (webhook).
    pub json: Option<Value>,
    /// When the request arrived (push-to-delivery latency in the benchmark).
    pub received_at: std::time::Instant,
}

impl Delivery {
    /// The first value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        let found = self.form.iter().find(|(k, _)| k == name);
        found.map(|(_, v)| v.as_str())
    }

    /// Buildbot: the `properties` field parsed (`{}` when absent); webhook: the JSON body.
    pub fn properties(&self) -> Value {
        match self.endpoint {
            Endpoint::Buildbot => self
                .field("properties")
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_else(|| Value::Object(Default::default())),
            Endpoint::Webhook => self.json.clone().unwrap_or(Value::Null),
        }
    }

    /// A header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        let found = self.headers.iter().find(|(k, _)| *k == name);
        found.map(|(_, v)| v.as_str())
    }

    /// `X-Forgewatch-Signature-256` is `sha256=` + hex HMAC-SHA256(secret, body), compared in
    /// constant time.
    pub fn verify_signature(&self, secret: &[u8]) -> bool {
        let Some(hex_sig) = self
            .header("x-forgewatch-signature-256")
            .and_then(|s| s.strip_prefix("sha256="))
        else {
            return false;
        };
        let Ok(sig) = hex::decode(hex_sig) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(&self.body);
        mac.verify_slice(&sig).is_ok()
    }
}

/// Handle on running fake CI receivers; clones share the same state.
#[derive(Clone)]
pub struct FakeCi {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<CiState>,
    addr: SocketAddr,
    accepted_count: watch::Sender<usize>,
}

struct CiState {
    accepted: Vec<Delivery>,
    rejected: usize,
    fail_next: usize,
    fail_status: u16,
    buildbot_status: u16,
    /// Expected `Authorization` header value for the Buildbot hook.
    basic_auth: Option<String>,
    webhook_secret: Option<Vec<u8>>,
}

type Rejection = (u16, String);

const REQUIRED_FIELDS: [&str; 6] = [
    "revision",
    "branch",
    "repository",
    "project",
    "category",
    "comments",
];

impl FakeCi {
    /// Serves both receivers on `127.0.0.1:0` in a spawned tokio task.
    pub async fn start() -> FakeCi {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeCi::start_on(addr)
            .await
            .expect("fake CI: cannot bind 127.0.0.1:0")
    }

    /// Serves both receivers on `addr` in a spawned tokio task.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeCi> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let ci = FakeCi {
            inner: Arc::new(Inner {
                state: Mutex::new(CiState {
                    accepted: Vec::new(),
                    rejected: 0,
                    fail_next: 0,
                    fail_status: 500,
                    buildbot_status: 200,
                    basic_auth: None,
                    webhook_secret: None,
                }),
                addr: listener.local_addr()?,
                accepted_count: watch::channel(0).0,
            }),
        };
        let app = Router::new()
            .route("/change_hook/base", post(buildbot))
            .route("/hook", post(webhook))
            .with_state(ci.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ci)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT/change_hook/base`
    pub fn buildbot_url(&self) -> String {
        format!("http://{}/change_hook/base", self.inner.addr)
    }

    /// `http://127.0.0.1:PORT/hook`
    pub fn webhook_url(&self) -> String {
        format!("http://{}/hook", self.inner.addr)
    }

    fn lock(&self) -> MutexGuard<'_, CiState> {
        self.inner
            .state
            .lock()
            .expect("fake CI state mutex poisoned by a panicking test")
    }

    /// The next `n` requests (either endpoint) answer `status` and count as rejected.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = self.lock();
        st.fail_next = n;
        st.fail_status = status;
    }

    /// Status of accepted Buildbot changes: 200 (Buildbot 4.3, the default) or 202 (older).
    pub fn set_buildbot_status(&self, status: u16) {
        self.lock().buildbot_status = status;
    }

    /// Makes the Buildbot hook demand HTTP Basic auth (`change_hook_auth`).
    pub fn require_basic_auth(&self, user: &str, password: &str) {
        let encoded = base64(format!("{user}:{password}").as_bytes());
        self.lock().basic_auth = Some(format!("Basic {encoded}"));
    }

    /// When `Some`, the webhook answers 401 unless the signature matches this secret.
    pub fn require_webhook_secret(&self, secret: Option<&[u8]>) {
        self.lock().webhook_secret = secret.map(<[u8]>::to_vec);
    }

    /// Accepted requests only, in arrival order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.lock().accepted.clone()
    }

    pub fn rejected_count(&self) -> usize {
        self.lock().rejected
    }

    /// A receiver of the number of accepted deliveries, updated on each acceptance.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.inner.accepted_count.subscribe()
    }

    /// Resolves to `true` once at least `n` deliveries are accepted, `false` after `timeout`.
    pub fn wait_for_accepted(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send + use<> {
        let mut rx = self.subscribe();
        async move {
            matches!(
                tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await,
                Ok(Ok(_))
            )
        }
    }

    fn receive(&self, endpoint: Endpoint, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
        let mut st = self.lock();
        if st.fail_next > 0 {
            st.fail_next -= 1;
            st.rejected += 1;
            return reply(st.fail_status, "injected failure\n".to_owned(), false);
        }
        let mut delivery = Delivery {
            endpoint,
            headers: headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: body.to_vec(),
            form: Vec::new(),
            json: None,
            received_at: std::time::Instant::now(),
        };
        let outcome = match endpoint {
            Endpoint::Buildbot => st.check_buildbot(&mut delivery, uri.query().unwrap_or("")),
            Endpoint::Webhook => st.check_webhook(&mut delivery),
        };
        match outcome {
            Ok(status) => {
                st.accepted.push(delivery);
                self.inner.accepted_count.send_replace(st.accepted.len());
                reply(status, String::new(), false)
            }
            Err((status, message)) => {
                st.rejected += 1;
                reply(status, message, endpoint == Endpoint::Buildbot)
            }
        }
    }
}

impl CiState {
    fn check_buildbot(&self, delivery: &mut Delivery, query: &str) -> Result<u16, Rejection> {
        if let Some(expected) = &self.basic_auth
            && delivery.header("authorization") != Some(expected.as_str())
        {
            return Err((401, "Unauthorized\n".to_owned()));
        }
        let content_type = delivery.header("content-type").unwrap_or("");
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err(bad(format!(
                "expected application/x-www-form-urlencoded, got {content_type:?}"
            )));
        }
        let trimmed = delivery.body.trim_ascii_start();
        if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
            return Err(bad(
                "JSON body: the base dialect only reads form fields".to_owned()
            ));
        }
        delivery.form = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .chain(form_urlencoded::parse(&delivery.body).into_owned())
            .collect();
        let missing: Vec<&str> = REQUIRED_FIELDS
            .into_iter()
            .filter(|f| delivery.field(f).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!("missing fields: {}", missing.join(", "))));
        }
        if let Some(props) = delivery.field("properties") {
            match serde_json::from_str::<Value>(props) {
                Ok(Value::Object(_)) => {}
                _ => return Err(bad("properties must be a JSON object".to_owned())),
            }
        }
        if let Some(files) = delivery.field("files")
            && !matches!(serde_json::from_str::<Value>(files), Ok(Value::Array(_)))
        {
            return Err(bad("files must be a JSON array".to_owned()));
        }
        if let Some(when) = delivery.field("when_timestamp")
            && when.parse::<f64>().is_err()
        {
            return Err(bad("when_timestamp must be a number".to_owned()));
        }
        Ok(self.buildbot_status)
    }

    fn check_webhook(&self, delivery: &mut Delivery) -> Result<u16, Rejection> {
        let content_type = delivery.header("content-type").unwrap_or("");
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return Err(bad(format!(
                "expected application/json, got {content_type:?}"
            )));
        }
        if !delivery
            .header("x-forgewatch-delivery")
            .is_some_and(is_uuid)
        {
            return Err(bad("X-Forgewatch-Delivery must be a UUID".to_owned()));
        }
        if delivery
            .header("x-forgewatch-event")
            .is_none_or(str::is_empty)
        {
            return Err(bad("missing X-Forgewatch-Event".to_owned()));
        }
        let signature = delivery.header("x-forgewatch-signature-256").unwrap_or("");
        let well_formed = signature
            .strip_prefix("sha256=")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err(bad(
                "X-Forgewatch-Signature-256 must be sha256=<64 hex>".to_owned()
            ));
        }
        if let Some(secret) = &self.webhook_secret
            && !delivery.verify_signature(secret)
        {
            return Err((401, "signature mismatch\n".to_owned()));
        }
        match serde_json::from_slice(&delivery.body) {
            Ok(json) => delivery.json = Some(json),
            Err(e) => return Err(bad(format!("body is not JSON: {e}"))),
        }
        Ok(200)
    }
}

async fn buildbot(State(ci): State<FakeCi>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    ci.receive(Endpoint::Buildbot, &uri, &headers, body)
}

async fn webhook(State(ci): State<FakeCi>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    ci.receive(Endpoint::Webhook, &uri, &headers, body)
}

fn bad(message: String) -> Rejection {
    (400, format!("{message}\n"))
}

/// A plain-text answer; a Buildbot 401 carries the Basic challenge.
fn reply(status: u16, body: String, basic_challenge: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body).into_response();
    if basic_challenge && status == StatusCode::UNAUTHORIZED {
        let challenge = header::HeaderValue::from_static("Basic realm=\"buildbot\"");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    resp
}

fn is_uuid(value: &str) -> bool {
    value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Standard base64 with padding (enough to build a Basic auth header).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
