//! The HTTP side of the fake GitLab: request logging, injected failures, rate-limit
//! accounting (`RateLimit-*`, where a 304 still costs), authentication and conditional GETs
//! with weak body-digest ETags (`forge-apis.md` §2.1, §2.2). Routing and JSON rendering live
//! in `routes.rs`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Failure, FakeGitLab, GlState, RequestRecord, faults};
use crate::fake_github::{now_epoch, secs_until};
use crate::format::http_date;

/// Largest request body read (pipeline trigger forms are tiny).
const MAX_BODY: usize = 1 << 20;

const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

const PROXY_503: &str = "upstream connect error or disconnect/reset before headers. \
reset reason: connection failure";

/// A response before it is turned into HTTP.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Vec<u8>,
}

/// The parts of a request the fake looks at.
pub(super) struct Req<'a> {
    pub(super) method: &'a Method,
    /// Raw path, still percent-encoded.
    pub(super) path: &'a str,
    pub(super) query: &'a str,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a [u8],
    /// The credential sent, if any: `PRIVATE-TOKEN` or a bearer token.
    pub(super) token: Option<String>,
}

impl Req<'_> {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(super) async fn handle(State(gl): State<FakeGitLab>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let private_token = header("private-token");
    let authorization = private_token.or_else(|| header("authorization"));
    let token = match private_token {
        Some(t) => Some(t.trim().to_owned()),
        None => header("authorization").and_then(bearer),
    };
    let request = Req {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
        token,
    };
    let arrived = std::time::SystemTime::now();
    let record = |status, gzip| RequestRecord {
        method: parts.method.to_string(),
        arrived,
        path: request.path.to_owned(),
        query: request.query.to_owned(),
        status,
        conditional: header("if-none-match").is_some() || header("if-modified-since").is_some(),
        authorization: authorization.map(str::to_owned),
        accept_encoding: header("accept-encoding").map(str::to_owned),
        gzip,
    };
    let answered = {
        let mut st = gl.lock();
        if let Some(hung) = gl.take_hang(&mut st, request.path) {
            // Recorded (status 0) and counted as served when taken, answered once released.
            st.requests.push(record(0, false));
            gl.inner.served.send_replace(st.requests.len());
            Err(hung)
        } else {
            let mut reply = st.serve(&request);
            // Like GitLab (whose API ETags are weak already); compressed by `respond`,
            // out of the state's lock.
            let gzip = crate::gzip::wanted(&parts.headers, &reply.body);
            if gzip {
                reply.headers.push(("content-encoding", "gzip".to_owned()));
            }
            st.requests.push(record(reply.status, gzip));
            gl.inner.served.send_replace(st.requests.len());
            Ok(reply)
        }
    };
    match answered {
        Ok(reply) => respond(reply),
        Err(hung) => {
            hung.await;
            respond(faults::unavailable())
        }
    }
}

fn respond(reply: Reply) -> Response {
    let body = crate::gzip::encoded(&reply.headers, reply.body);
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            resp.headers_mut()
                .append(HeaderName::from_static(name), value);
        }
    }
    resp
}

/// The token of `Authorization: Bearer TOKEN` (GitLab accepts no other scheme for PATs).
fn bearer(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
}

impl GlState {
    fn serve(&mut self, req: &Req<'_>) -> Reply {
        if let Some(failure) = self.faults.next_failure() {
            return self.failure(failure, req);
        }
        self.refill_if_reset();
        // Rack::Attack counts the request before the endpoint runs: 304s and errors cost too.
        let used = self.used.entry(req.token.clone()).or_default();
        *used += 1;
        let count = *used;
        let standing = self.standing(count, window_end());
        let mut reply = if standing.throttled {
            let mut reply = retry_later();
            reply.headers.extend([
                ("ratelimit-resettime", http_date(standing.reset_at)),
                ("retry-after", secs_until(standing.reset_at).to_string()),
            ]);
            reply
        } else if !self.authorized(req) {
            error_message(401, json!("401 Unauthorized"))
        } else {
            self.route(req)
        };
        self.maybe_echo(&mut reply, req.headers);
        let name = match req.token {
            Some(_) => "throttle_authenticated_api",
            None => "throttle_unauthenticated_api",
        };
        reply.headers.extend(rate_limit_headers(
            standing.limit,
            name,
            standing.observed,
            standing.remaining,
            standing.reset_at,
        ));
        reply
    }

    /// The pipeline trigger route authenticates by its trigger token, the rest by the
    /// required personal token (if any).
    fn authorized(&self, req: &Req<'_>) -> bool {
        let trigger = req.method == Method::POST && req.path.ends_with("/trigger/pipeline");
        match &self.required_token {
            Some(required) if !trigger => req.token.as_deref() == Some(required.as_str()),
            _ => true,
        }
    }

    fn failure(&self, failure: Failure, req: &Req<'_>) -> Reply {
        match failure {
            Failure::Status429 { retry_after: None } => retry_later(),
            Failure::Status429 {
                retry_after: Some(secs),
            } => {
                let mut reply = retry_later();
                let limit = self.rate_limit;
                let name = match req.token {
                    Some(_) => "throttle_authenticated_api",
                    None => "throttle_unauthenticated_api",
                };
                reply
                    .headers
                    .extend(rate_limit_headers(limit, name, limit + 1, 0, window_end()));
                reply.headers.extend([
                    ("ratelimit-resettime", http_date(now_epoch() + secs)),
                    ("retry-after", secs.to_string()),
                ]);
                reply
            }
            Failure::Status403Plain => error_message(403, json!("403 Forbidden")),
            Failure::Html502 => Reply {
                status: 502,
                headers: vec![("content-type", "text/html".to_owned())],
                body: NGINX_502.as_bytes().to_vec(),
            },
            Failure::NonJsonProxyError => Reply {
                status: 503,
                headers: vec![("content-type", "text/plain".to_owned())],
                body: PROXY_503.as_bytes().to_vec(),
            },
        }
    }

    /// A GET's 200, or a 304 when `If-None-Match` holds the body's ETag (weak comparison,
    /// list form and `*` accepted). `extra` (pagination) is sent with both.
    pub(super) fn conditional(
        &self,
        value: &Value,
        extra: Vec<(&'static str, String)>,
        req: &Req<'_>,
    ) -> Reply {
        let body = serde_json::to_vec(value).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(&body));
        let opaque = format!("\"{}\"", &digest[..32]);
        let not_modified = req.header("if-none-match").is_some_and(|inm| {
            inm.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == opaque)
        });
        let mut reply = Reply {
            status: 200,
            headers: vec![
                ("etag", format!("W/{opaque}")),
                (
                    "cache-control",
                    "max-age=0, private, must-revalidate".to_owned(),
                ),
                ("vary", "Origin".to_owned()),
                ("x-content-type-options", "nosniff".to_owned()),
                ("x-frame-options", "SAMEORIGIN".to_owned()),
            ],
            body: Vec::new(),
        };
        reply.headers.extend(extra);
        if not_modified {
            // Rack's ConditionalGet drops the body and Content-Type, keeps the rest.
            reply.status = 304;
        } else {
            reply
                .headers
                .push(("content-type", "application/json".to_owned()));
            reply.body = body;
        }
        reply
    }
}

/// End of the current one-minute throttle window, in epoch seconds.
fn window_end() -> u64 {
    (now_epoch() / 60 + 1) * 60
}

fn rate_limit_headers(
    limit: u64,
    name: &str,
    observed: u64,
    remaining: u64,
    reset_at: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("ratelimit-limit", limit.to_string()),
        ("ratelimit-name", name.to_owned()),
        ("ratelimit-observed", observed.to_string()),
        ("ratelimit-remaining", remaining.to_string()),
        ("ratelimit-reset", reset_at.to_string()),
    ]
}

/// Rack::Attack's throttled answer, headers left to the caller.
fn retry_later() -> Reply {
    Reply {
        status: 429,
        headers: vec![("content-type", "text/plain".to_owned())],
        body: b"Retry later\n".to_vec(),
    }
}

pub(super) fn json_reply(status: u16, body: &Value) -> Reply {
    Reply {
        status,
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-cache".to_owned()),
            ("vary", "Origin".to_owned()),
        ],
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

/// GitLab's `{"message": ...}` errors (from the endpoints).
pub(super) fn error_message(status: u16, message: Value) -> Reply {
    json_reply(status, &json!({ "message": message }))
}

/// GitLab's `{"error": ...}` errors (from Grape: routing, parameter validation).
pub(super) fn error_text(status: u16, error: &str) -> Reply {
    json_reply(status, &json!({ "error": error }))
}
