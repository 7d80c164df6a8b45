//! Response compression both fake forges share: GitHub and GitLab gzip a response body
//! when the request sends `Accept-Encoding: gzip` (a 100-PR page is about 1.8 MB
//! uncompressed), so the fakes do too, and record that they did, for the tests to check
//! that the daemon asks for it and still decodes and revalidates the answers. The fakes
//! decide under their state's lock ([`wanted`]) and compress after it ([`encoded`]).

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

/// Whether `body` goes compressed (`Content-Encoding: gzip`) to this request.
pub fn wanted(request: &HeaderMap, body: &[u8]) -> bool {
    !body.is_empty() && accepts_gzip(request)
}

/// The body as it goes out: gzipped when the reply's headers say
/// `Content-Encoding: gzip` (set where [`wanted`] said so).
pub fn encoded(headers: &[(&'static str, String)], body: Vec<u8>) -> Vec<u8> {
    let gzip = headers
        .iter()
        .any(|(name, value)| *name == "content-encoding" && value == "gzip");
    if gzip { compress(&body) } else { body }
}

fn compress(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .expect("gzip into memory cannot fail")
}
