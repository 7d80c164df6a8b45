//! The HTTP side of the fake GitHub: routing, JSON rendering shaped like GitHub's,
//! conditional requests, pagination and rate-limit accounting (`forge-apis.md` §1).
//! Split from `fake_github.rs`, which keeps the public API and the state it mutates.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::form_urlencoded;

use super::app::TokenCheck;
use super::{FakeGitHub, GhState, Pr, Repo, RequestRecord, faults};
use crate::format::{http_date, parse_http_date, pct_decode, rfc3339};

const DOCS: &str = "https://docs.github.com/rest";

/// A response before it is turned into HTTP.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Vec<u8>,
}

/// A successful resource before conditional handling.
struct Content {
    value: Value,
    link: Option<String>,
    modified: u64,
}

pub(super) async fn handle(State(gh): State<FakeGitHub>, req: Request) -> Response {
    // In flight from arrival until answered (or until the handler is dropped while held).
    let in_flight = gh.enter();
    gh.pass_gate().await;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let arrived = std::time::SystemTime::now();
    let record = |status, gzip| RequestRecord {
        method: parts.method.to_string(),
        arrived,
        path: path.to_owned(),
        query: query.to_owned(),
        status,
        conditional: header("if-none-match").is_some() || header("if-modified-since").is_some(),
        authorization: header("authorization").map(str::to_owned),
        accept_encoding: header("accept-encoding").map(str::to_owned),
        gzip,
    };
    let answered = {
        let mut st = gh.lock();
        if let Some(hung) = gh.take_hang(&mut st, path) {
            // Recorded (status 0) and counted as served when taken; in flight until answered.
            st.requests.push(record(0, false));
            gh.inner.served.send_replace(st.requests.len());
            Err(hung)
        } else {
            let mut reply = st.serve(&parts.method, path, query, &parts.headers, &body);
            let gzip = reply.gzip_if_accepted(&parts.headers);
            st.requests.push(record(reply.status, gzip));
            // No longer in flight by the time it counts as served: whoever sees the served
            // count reach `n` also sees the `n`th request gone from `in_flight`.
            drop(in_flight);
            gh.inner.served.send_replace(st.requests.len());
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

impl Reply {
    /// When the request accepts gzip, marks the body to go compressed (by
    /// [`respond`], out of the state's lock), like GitHub, whose ETag of a compressed
    /// body is weak (`W/"…"`); whether it will.
    fn gzip_if_accepted(&mut self, request: &HeaderMap) -> bool {
        let gzip = crate::gzip::wanted(request, &self.body);
        if gzip {
            self.headers.push(("content-encoding", "gzip".to_owned()));
            for (name, value) in &mut self.headers {
                if *name == "etag" && !value.starts_with("W/") {
                    *value = format!("W/{value}");
                }
            }
        }
        gzip
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

impl GhState {
    fn serve(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        let token = authorization.map(|a| {
            let (scheme, rest) = a.trim().split_once(' ').unwrap_or(("", a));
            match scheme.to_ascii_lowercase().as_str() {
                "bearer" | "token" => rest.trim().to_owned(),
                _ => a.trim().to_owned(),
            }
        });
        if let Some(reply) = self.app_endpoint(method, path, authorization) {
            return reply;
        }
        let app_token = self.apps.check_token(token.as_deref());
        let authorized = match (&app_token, &self.required_token) {
            (TokenCheck::Live(_), _) | (TokenCheck::Other, None) => true,
            (TokenCheck::Expired, _) => false,
            (TokenCheck::Other, Some(required)) => token.as_deref() == Some(required.as_str()),
        };
        // The budget spent: the installation's for its tokens, the token's when it is
        // accepted, else the anonymous one.
        let budget = match app_token {
            TokenCheck::Live(installation) => Some(format!("installation {installation}")),
            _ if authorized => token.clone(),
            _ => None,
        };
        self.refill_if_reset();
        if let Some(reply) = self.fault_reply(budget.as_deref()) {
            return reply;
        }
        let mut reply = if !authorized {
            let mut reply = error(401, "Bad credentials", DOCS);
            self.maybe_echo(&mut reply, headers);
            reply
        } else if let Some(reply) = self.post_status(method, path, body) {
            reply
        } else {
            match self.route(method, path, query) {
                Ok(content) => {
                    self.mergeability_computed(path);
                    self.conditional(content, path, query, token.as_deref(), headers)
                }
                Err(reply) => reply,
            }
        };
        let free = reply.status == 304 && authorization.is_some();
        if !free {
            *self.used.entry(budget.clone()).or_default() += 1;
        }
        reply.headers.extend(self.rate_headers(budget.as_deref()));
        reply
    }

    /// Turns a resource into a 200 or a 304 according to the request's validators.
    fn conditional(
        &mut self,
        content: Content,
        path: &str,
        query: &str,
        token: Option<&str>,
        headers: &HeaderMap,
    ) -> Reply {
        let body = serde_json::to_vec(&content.value).unwrap_or_default();
        // GitHub's ETags are per token: a validator got with token A misses with token B.
        let mut hasher = Sha256::new();
        if let Some(token) = token {
            hasher.update(format!("token:{token}\n"));
        }
        hasher.update(&body);
        let tag = format!("\"{}\"", &hex::encode(hasher.finalize())[..32]);
        let last_modified = http_date(content.modified);
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let not_modified = match (header("if-none-match"), header("if-modified-since")) {
            (Some(inm), _) => inm
                .split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == tag),
            (None, Some(ims)) => parse_http_date(ims).is_some_and(|t| content.modified <= t),
            (None, None) => false,
        };
        let mut reply = Reply {
            status: 200,
            headers: vec![
                (
                    "cache-control",
                    "private, max-age=60, s-maxage=60".to_owned(),
                ),
                ("vary", "Accept, Authorization".to_owned()),
                ("last-modified", last_modified),
            ],
            body: Vec::new(),
        };
        if not_modified {
            reply.status = 304;
            reply.headers.push(("etag", tag));
            return reply;
        }
        let url = format!("{path}?{query}");
        let first = self.seen_urls.insert(url);
        reply
            .headers
            .push(("etag", if first { format!("W/{tag}") } else { tag }));
        reply
            .headers
            .push(("content-type", "application/json; charset=utf-8".to_owned()));
        if let Some(link) = content.link {
            reply.headers.push(("link", link));
        }
        reply.body = body;
        reply
    }

    fn route(&self, method: &Method, path: &str, query: &str) -> Result<Content, Reply> {
        if method != Method::GET {
            return Err(not_found());
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ["repos", owner, name, rest @ ..] = segments.as_slice() else {
            return Err(not_found());
        };
        let key = format!("{}/{}", pct_decode(owner), pct_decode(name)).to_lowercase();
        let repo = self.repos.get(&key).ok_or_else(not_found)?;
        let content = |value, link| Content {
            value,
            link,
            modified: repo.modified,
        };
        match rest {
            [] => {
                let mut value = self.repo_json(repo.id, &repo.full_name);
                value["default_branch"] = json!(repo.default_branch);
                Ok(content(value, None))
            }
            ["branches"] => {
                let items = repo
                    .branches
                    .iter()
                    .map(|(b, sha)| self.branch_json(repo, b, sha));
                let (value, link) = self.paginate(items.collect(), path, query);
                Ok(content(value, link))
            }
            ["branches", branch @ ..] if !branch.is_empty() => {
                let branch: Vec<String> = branch.iter().map(|s| pct_decode(s)).collect();
                let branch = branch.join("/");
                match repo.branches.get(&branch) {
                    Some(sha) => Ok(content(self.branch_json(repo, &branch, sha), None)),
                    None => Err(error(
                        404,
                        "Branch not found",
                        "https://docs.github.com/rest/branches/branches#get-a-branch",
                    )),
                }
            }
            ["pulls"] => {
                let (value, link) = self.list_pulls(repo, path, query);
                Ok(content(value, link))
            }
            ["pulls", number] => {
                let pr = number.parse().ok().and_then(|n| repo.pulls.get(&n));
                let pr = pr.ok_or_else(not_found)?;
                let mut value = self.pr_json(repo, pr);
                let computing = self.lazy_mergeability && pr.computed_at != current_pair(repo, pr);
                let mergeable = if computing { None } else { pr.mergeable };
                value["mergeable"] = json!(mergeable);
                value["mergeable_state"] = json!(match mergeable {
                    None => "unknown",
                    Some(_) if pr.draft => "draft",
                    Some(true) => "clean",
                    Some(false) => "dirty",
                });
                value["merged"] = json!(false);
                Ok(content(value, None))
            }
            _ => Err(not_found()),
        }
    }

    /// A single-PR read starts GitHub's computation of its mergeability at the
    /// current pair: the reads after it see the value.
    fn mergeability_computed(&mut self, path: &str) {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let ["repos", owner, name, "pulls", number] = segments.as_slice() else {
            return;
        };
        let key = format!("{}/{}", pct_decode(owner), pct_decode(name)).to_lowercase();
        let (Some(repo), Ok(number)) = (self.repos.get_mut(&key), number.parse::<u64>()) else {
            return;
        };
        let pair = repo.pulls.get(&number).map(|pr| current_pair(repo, pr));
        if let (Some(pair), Some(pr)) = (pair, repo.pulls.get_mut(&number)) {
            pr.computed_at = pair;
        }
    }

    fn list_pulls(&self, repo: &Repo, path: &str, query: &str) -> (Value, Option<String>) {
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |name: &str| params.get(name).map(String::as_str);
        let state = param("state").unwrap_or("open");
        let mut pulls: Vec<&Pr> = repo
            .pulls
            .values()
            .filter(|pr| match state {
                "all" => true,
                "closed" => !pr.open,
                _ => pr.open,
            })
            .filter(|pr| param("base").is_none_or(|b| b == pr.base))
            .collect();
        let sort = param("sort").unwrap_or("created");
        match sort {
            "updated" => pulls.sort_by_key(|pr| (pr.updated_at, pr.number)),
            _ => pulls.sort_by_key(|pr| pr.number),
        }
        let default_dir = if sort == "created" { "desc" } else { "asc" };
        if param("direction").unwrap_or(default_dir) == "desc" {
            pulls.reverse();
        }
        let items = pulls.into_iter().map(|pr| self.pr_json(repo, pr)).collect();
        self.paginate(items, path, query)
    }

    /// Cuts one page out of `items`, with GitHub's `Link` header when there are several pages.
    fn paginate(&self, items: Vec<Value>, path: &str, query: &str) -> (Value, Option<String>) {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let number = |name: &str| {
            let value = params.iter().find(|(k, _)| k == name);
            value
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        let per_page = number("per_page").map_or(30, |n| n.min(100));
        let page = number("page").unwrap_or(1);
        let last = items.len().div_ceil(per_page).max(1);
        let start = (page - 1).saturating_mul(per_page);
        let slice: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
        if last == 1 {
            return (Value::Array(slice), None);
        }
        let url = |n: usize| {
            let mut out = form_urlencoded::Serializer::new(String::new());
            let mut placed = false;
            for (k, v) in &params {
                if k != "page" {
                    out.append_pair(k, v);
                } else if !placed {
                    out.append_pair("page", &n.to_string());
                    placed = true;
                }
            }
            if !placed {
                out.append_pair("page", &n.to_string());
            }
            format!("<{}{}?{}>", self.api_url, path, out.finish())
        };
        let mut rels = Vec::new();
        if page > 1 {
            rels.push(format!("{}; rel=\"prev\"", url(page - 1)));
        }
        if page < last {
            rels.push(format!("{}; rel=\"next\"", url(page + 1)));
            rels.push(format!("{}; rel=\"last\"", url(last)));
        }
        if page > 1 {
            rels.push(format!("{}; rel=\"first\"", url(1)));
        }
        (Value::Array(slice), Some(rels.join(", ")))
    }

    fn repo_json(&self, id: u64, full_name: &str) -> Value {
        let (owner, name) = full_name.split_once('/').unwrap_or(("", full_name));
        json!({
            "id": id,
            "name": name,
            "full_name": full_name,
            "owner": user_json(owner),
            "private": false,
            "html_url": format!("https://github.com/{full_name}"),
            "clone_url": format!("https://github.com/{full_name}.git"),
            "url": format!("{}/repos/{full_name}", self.api_url),
        })
    }

    fn branch_json(&self, repo: &Repo, branch: &str, sha: &str) -> Value {
        json!({
            "name": branch,
            "commit": {
                "sha": sha,
                "url": format!("{}/repos/{}/commits/{sha}", self.api_url, repo.full_name),
            },
            "protected": false,
        })
    }

    fn pr_json(&self, repo: &Repo, pr: &Pr) -> Value {
        let base_sha = repo.branches.get(&pr.base).cloned().unwrap_or_default();
        let merge = Sha256::digest(format!("merge {base_sha} {} {}", pr.head_sha, pr.number));
        let base_repo = self.repo_json(repo.id, &repo.full_name);
        let head_repo = match (&pr.head_repo, pr.head_repo_deleted) {
            (_, true) => Value::Null,
            (None, false) => base_repo.clone(),
            (Some(fork), false) => self.repo_json(fork.id, &fork.full_name),
        };
        let base_owner = owner_of(&repo.full_name);
        json!({
            "url": format!("{}/repos/{}/pulls/{}", self.api_url, repo.full_name, pr.number),
            "id": pr.id,
            "number": pr.number,
            "state": if pr.open { "open" } else { "closed" },
            "locked": false,
            "title": pr.title,
            "body": pr.body,
            "user": user_json(&pr.author),
            "labels": pr.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            "draft": pr.draft,
            "created_at": rfc3339(pr.created_at),
            "updated_at": rfc3339(pr.updated_at),
            "closed_at": pr.closed_at.map(rfc3339),
            "merged_at": null,
            "merge_commit_sha": &hex::encode(merge)[..40],
            "head": {
                "label": format!("{}:{}", pr.head_owner, pr.head_ref),
                "ref": pr.head_ref,
                "sha": pr.head_sha,
                "user": user_json(&pr.head_owner),
                "repo": head_repo,
            },
            "base": {
                "label": format!("{base_owner}:{}", pr.base),
                "ref": pr.base,
                "sha": base_sha,
                "user": user_json(base_owner),
                "repo": base_repo,
            },
            "author_association": pr.association,
            "html_url": pr.html_url.clone().unwrap_or_else(|| {
                format!("https://github.com/{}/pull/{}", repo.full_name, pr.number)
            }),
        })
    }
}

/// The PR's (base sha, head sha) pair now.
fn current_pair(repo: &Repo, pr: &Pr) -> (String, String) {
    let base_sha = repo.branches.get(&pr.base).cloned().unwrap_or_default();
    (base_sha, pr.head_sha.clone())
}

pub(super) fn owner_of(full_name: &str) -> &str {
    full_name.split_once('/').map_or(full_name, |(o, _)| o)
}

fn user_json(login: &str) -> Value {
    let digest = Sha256::digest(login.as_bytes());
    let id = u64::from_be_bytes([0, 0, 0, 0, digest[0], digest[1], digest[2], digest[3]]);
    json!({"login": login, "id": id % 100_000_000 + 1, "type": "User"})
}

pub(super) fn error(status: u16, message: &str, docs: &str) -> Reply {
    let body = json!({"message": message, "documentation_url": docs, "status": status.to_string()});
    Reply {
        status,
        headers: vec![("content-type", "application/json; charset=utf-8".to_owned())],
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

fn not_found() -> Reply {
    error(404, "Not Found", DOCS)
}
