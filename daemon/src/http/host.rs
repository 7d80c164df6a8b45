//! The `Host` check against DNS rebinding (issue 14, item 10). A page on another
//! origin can have a browser send requests to the loopback API under the page's own
//! name once that name's DNS answers 127.0.0.1; the browser then lets the page read
//! the answers. The API answers only requests addressed to one of its own names:
//!
//! - its listen address as `IP:port`; `localhost:port` when it listens on loopback;
//!   any IP literal with its port when it listens on every address (an IP literal
//!   cannot be rebound);
//! - the host (and port) of `http.public_url`, the name a reverse proxy in front of
//!   it forwards, webhooks included.
//!
//! Any other `Host` gets 421 Misdirected Request, and nothing is done. A request
//! without one (HTTP/1.0) comes from no browser and is served.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::errors::error;

/// The names the API answers to.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    listen: SocketAddr,
    /// The `Host` values naming `http.public_url`, in lower case: `host:port`, and
    /// `host` alone when the port is its scheme's default.
    public: Vec<String>,
}

impl AllowedHosts {
    pub fn new(listen: SocketAddr, public_url: Option<&url::Url>) -> AllowedHosts {
        let mut public = Vec::new();
        if let Some(url) = public_url
            && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
        {
            let host = host.to_ascii_lowercase();
            public.push(format!("{host}:{port}"));
            if url.port().is_none() {
                public.push(host);
            }
        }
        AllowedHosts { listen, public }
    }

    /// Whether `host` (a `Host` header's value) names this server.
    pub fn allows(&self, host: &str) -> bool {
        if self.public.contains(&host.to_ascii_lowercase()) {
            return true;
        }
        let Ok(authority) = host.parse::<Authority>() else {
            return false;
        };
        if authority.as_str().contains('@') {
            return false;
        }
        let name = authority.host().to_ascii_lowercase();
        let port = authority.port_u16();
        if port != Some(self.listen.port()) {
            return false;
        }
        let listen = self.listen.ip();
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip == listen || listen.is_unspecified(),
            Err(_) => name == "localhost" && (listen.is_loopback() || listen.is_unspecified()),
        }
    }
}

/// Refuses a request whose `Host` (or absolute URI) names another server.
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let named = request.uri().authority().map(Authority::as_str);
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or_default());
    if named.into_iter().chain(host).all(|h| allowed.allows(h)) {
        next.run(request).await
    } else {
        error(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header names no address of this server (its `http.listen` address, \
             or the host of `http.public_url`)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(listen: &str, public_url: Option<&str>) -> AllowedHosts {
        let url = public_url.map(|u| url::Url::parse(u).expect("url"));
        AllowedHosts::new(listen.parse().expect("address"), url.as_ref())
    }

    #[test]
    fn names_of_a_loopback_listener() {
        let hosts = allowed("127.0.0.1:8471", None);
        for host in ["127.0.0.1:8471", "localhost:8471", "LOCALHOST:8471"] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "127.0.0.1",
            "127.0.0.1:8472",
            "127.0.0.2:8471",
            "0.0.0.0:8471",
            "localhost",
            "evil.example:8471",
            "localhost.evil.example:8471",
            "user@127.0.0.1:8471",
            "",
            "a b",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
        let v6 = allowed("[::1]:8471", None);
        assert!(v6.allows("[::1]:8471") && v6.allows("localhost:8471"));
        assert!(!v6.allows("127.0.0.1:8471"));
    }

    #[test]
    fn every_address_and_a_public_url() {
        let hosts = allowed("0.0.0.0:8471", Some("https://CI.example.org/forgewatch/"));
        for host in [
            "10.1.2.3:8471",
            "[fe80::1]:8471",
            "localhost:8471",
            "ci.example.org",
            "ci.example.org:443",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "myhost:8471",
            "ci.example.org:8471",
            "ci.example.org:80",
            "10.1.2.3",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
        let hosts = allowed("192.0.2.7:8471", Some("http://ci.example.org:8080"));
        assert!(hosts.allows("ci.example.org:8080") && hosts.allows("192.0.2.7:8471"));
        for host in ["ci.example.org", "ci.example.org:80", "localhost:8471"] {
            assert!(!hosts.allows(host), "{host}");
        }
    }
}
