//! What a forge's response headers say beyond the status: its rate limit (GitHub's
//! `x-ratelimit-*` or GitLab's `RateLimit-*`) and where the next page of a list is
//! (`Link: rel="next"`, or GitLab's `x-next-page`).

use std::time::{Duration, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap};

use crate::forge::RateLimit;

pub(super) fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

fn header_u64(headers: &HeaderMap, names: &[&str]) -> Option<u64> {
    names
        .iter()
        .find_map(|n| headers.get(*n)?.to_str().ok()?.trim().parse().ok())
}

/// GitHub's `x-ratelimit-*` or GitLab's `RateLimit-*`.
pub fn parse_rate_limit(headers: &HeaderMap) -> Option<RateLimit> {
    let rate = RateLimit {
        limit: header_u64(headers, &["x-ratelimit-limit", "ratelimit-limit"]),
        remaining: header_u64(headers, &["x-ratelimit-remaining", "ratelimit-remaining"]),
        used: header_u64(headers, &["x-ratelimit-used", "ratelimit-observed"]),
        // A hostile value must not overflow the clock.
        reset_at: header_u64(headers, &["x-ratelimit-reset", "ratelimit-reset"])
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s))),
        resource: ["x-ratelimit-resource", "ratelimit-name"]
            .iter()
            .find_map(|n| headers.get(*n)?.to_str().ok().map(str::to_owned)),
    };
    (rate.limit.is_some() || rate.remaining.is_some()).then_some(rate)
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (target, params) = part.split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            is_next.then(|| target.to_owned())
        })
}

/// GitLab's offset pagination without `Link` (some proxies drop it): `x-next-page`
/// names the next page number, put into `url`'s `page` parameter.
pub(super) fn next_page_url(url: &str, headers: &HeaderMap) -> Option<String> {
    let next: u64 = headers
        .get("x-next-page")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let mut url = url::Url::parse(url).ok()?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("page", &next.to_string());
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn finds_the_next_link_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3&per_page=100>; rel=\"next\", <https://api.github.com/x?page=5>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/x?page=3&per_page=100")
        );
        h.insert(
            header::LINK,
            HeaderValue::from_static("<https://a/x?page=1>; rel=\"first\""),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn follows_x_next_page_without_link() {
        let mut h = HeaderMap::new();
        h.insert("x-next-page", HeaderValue::from_static("3"));
        assert_eq!(
            next_page_url(
                "https://g/api/v4/projects/a%2Fb/merge_requests?state=opened&page=2&per_page=100",
                &h
            )
            .as_deref(),
            Some("https://g/api/v4/projects/a%2Fb/merge_requests?state=opened&per_page=100&page=3")
        );
        h.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(next_page_url("https://g/x?page=2", &h), None);
    }

    #[test]
    fn reads_both_rate_limit_dialects() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("4990"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1767225600"));
        let r = parse_rate_limit(&h).unwrap();
        assert_eq!((r.limit, r.remaining), (Some(5000), Some(4990)));
        assert_eq!(
            r.reset_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        );

        let mut g = HeaderMap::new();
        g.insert("RateLimit-Limit", HeaderValue::from_static("2000"));
        g.insert("RateLimit-Remaining", HeaderValue::from_static("0"));
        let r = parse_rate_limit(&g).unwrap();
        assert_eq!(r.remaining, Some(0));
        assert!(parse_rate_limit(&HeaderMap::new()).is_none());
    }
}
