//! Response compression both fake forges share: GitHub and GitLab gzip a response body
//! when the request sends `Accept-Encoding: gzip` (a 100-PR page is about 1.8 MB
//! uncompressed), so the fakes do too, and record that they did, for the tests to check
//! that the daemon asks for it and still decodes and revalidates the answers.

use std::io::Write;

use axum::http::HeaderMap;
use flate2::Compression;
use flate2::write::GzEncoder;

/// Whether the request's `Accept-Encoding` lists `gzip` (without `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
                && parts.all(|p| p.replace(' ', "") != "q=0")
        })
}

/// Compresses `body` in place when the request accepts gzip and there is a body;
/// whether it did (the caller then sends `Content-Encoding: gzip`).
pub fn compress_if_accepted(request: &HeaderMap, body: &mut Vec<u8>) -> bool {
    if body.is_empty() || !accepts_gzip(request) {
        return false;
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    let compressed = encoder.write_all(body).and_then(|()| encoder.finish());
    match compressed {
        Ok(compressed) => {
            *body = compressed;
            true
        }
        Err(_) => false,
    }
}
