//! Plain HTTP to the fakes, for the tests of the fakes themselves (`fakes.rs`,
//! `fakes_gitlab.rs` and their fault files): a client, a GET with headers, a header
//! and a JSON body read back, and the clock the rate-limit headers speak.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Client, Response};
use serde_json::Value;

pub fn client() -> Client {
    // Uncompressed, to see the fakes' headers and bodies as they are made.
    Client::builder()
        .no_proxy()
        .no_gzip()
        .build()
        .expect("reqwest client")
}

pub fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request to the fake")
}

pub async fn json(resp: Response) -> Value {
    serde_json::from_str(&resp.text().await.expect("body")).expect("JSON body")
}

/// Seconds since the epoch, as `x-ratelimit-reset` and `RateLimit-Reset` count.
pub fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
