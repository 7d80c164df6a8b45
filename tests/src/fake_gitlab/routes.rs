//! The fake GitLab's routes under `/api/v4` and the JSON it renders, shaped like GitLab's:
//! projects addressed by id or encoded path, branches, merge requests (modern or legacy
//! fields), offset pagination with `x-*` headers and `Link`, and the pipeline trigger API
//! (`forge-apis.md` §2.3–2.5).

use axum::http::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::form_urlencoded;

use super::http::{Reply, Req, error_message, error_text, json_reply};
use super::state::draft_prefix_len;
use super::{GlState, Mr, MrState, PipelineTrigger, Project};
use crate::format::{iso_millis, iso_offset, pct_decode};

/// GitLab stops counting past this many items: no `x-total`, `x-total-pages`, `rel="last"`.
const MAX_COUNTED: usize = 10_000;

/// A route under `/projects/:id`.
enum Route<'a> {
    Project,
    Branches,
    Branch(&'a str),
    MergeRequests,
    MergeRequest(&'a str),
    Trigger,
    Status(&'a str),
}

impl GlState {
    pub(super) fn route(&mut self, req: &Req<'_>) -> Reply {
        let segments: Vec<&str> = req.path.split('/').collect();
        let ["", "api", "v4", rest @ ..] = segments.as_slice() else {
            return route_not_found();
        };
        let (id, route) = match rest {
            ["user"] if req.method == Method::GET => return self.user(req),
            ["user"] => return not_allowed(),
            ["projects", id, tail @ ..] => match classify(tail) {
                Some(route) => (*id, route),
                None => return route_not_found(),
            },
            _ => return route_not_found(),
        };
        let expected = match route {
            Route::Trigger | Route::Status(_) => Method::POST,
            _ => Method::GET,
        };
        if req.method != expected {
            return not_allowed();
        }
        let addressed = pct_decode(id);
        let Some(pid) = self.find(&addressed) else {
            return error_message(404, json!("404 Project Not Found"));
        };
        match route {
            Route::Project => self.conditional(&self.project_json(pid), Vec::new(), req),
            Route::Branches => self.list_branches(pid, req),
            Route::Branch(name) => {
                let name = pct_decode(name);
                let project = &self.projects[&pid];
                if project.branches.contains_key(&name) {
                    self.conditional(&self.branch_json(project, &name), Vec::new(), req)
                } else {
                    error_message(404, json!("404 Branch Not Found"))
                }
            }
            Route::MergeRequests => self.list_mrs(pid, req),
            Route::MergeRequest(iid) => {
                let Ok(iid) = iid.parse::<u64>() else {
                    return error_text(400, "merge_request_iid is invalid");
                };
                let project = &self.projects[&pid];
                match project.mrs.get(&iid) {
                    Some(mr) => {
                        let mut value = self.mr_json(project, mr);
                        value["diff_refs"] = json!({
                            "base_sha": project.branches.get(&mr.target_branch).map(|c| &c.sha),
                            "head_sha": mr.sha,
                            "start_sha": project.branches.get(&mr.target_branch).map(|c| &c.sha),
                        });
                        self.conditional(&value, Vec::new(), req)
                    }
                    None => error_message(404, json!("404 Not found")),
                }
            }
            Route::Trigger => self.trigger(pid, addressed, req),
            Route::Status(sha) => self.post_status(pid, sha, req),
        }
    }

    /// `GET /user`: the token's owner. Always needs a token, required or not.
    fn user(&self, req: &Req<'_>) -> Reply {
        match &req.token {
            None => error_message(401, json!("401 Unauthorized")),
            Some(token) => {
                let digest = Sha256::digest(format!("user:{token}"));
                let id = u64::from(u16::from_be_bytes([digest[0], digest[1]])) + 1;
                let mut value = user_json("forgewatch-bot", &self.public_host);
                value["id"] = json!(id);
                self.conditional(&value, Vec::new(), req)
            }
        }
    }

    fn project_json(&self, pid: u64) -> Value {
        let project = &self.projects[&pid];
        let mut value = self.project_summary(project);
        value["default_branch"] = json!(project.default_branch);
        value["visibility"] = json!("private");
        let forked = project.forked_from.and_then(|id| self.projects.get(&id));
        if let Some(parent) = forked {
            value["forked_from_project"] = self.project_summary(parent);
        }
        value
    }

    fn project_summary(&self, project: &Project) -> Value {
        let host = &self.public_host;
        let path = &project.path;
        let (namespace, name) = path.rsplit_once('/').unwrap_or(("", path));
        json!({
            "id": project.id,
            "name": name,
            "path": name,
            "path_with_namespace": path,
            "namespace": {"name": namespace.rsplit('/').next(), "full_path": namespace, "kind": "group"},
            "web_url": format!("https://{host}/{path}"),
            "http_url_to_repo": format!("https://{host}/{path}.git"),
            "ssh_url_to_repo": format!("git@{host}:{path}.git"),
        })
    }

    fn branch_json(&self, project: &Project, name: &str) -> Value {
        let (host, path) = (&self.public_host, &project.path);
        let commit = project.branches.get(name).map(|c| {
            json!({
                "id": c.sha,
                "short_id": &c.sha[..8],
                "title": c.title,
                "message": format!("{}\n", c.title),
                "created_at": iso_offset(c.at),
                "authored_date": iso_offset(c.at),
                "committed_date": iso_offset(c.at),
                "author_name": "Fake Committer",
                "committer_name": "Fake Committer",
                "parent_ids": [],
                "web_url": format!("https://{host}/{path}/-/commit/{}", c.sha),
            })
        });
        let default = project.default_branch == name;
        json!({
            "name": name,
            "commit": commit,
            "merged": false,
            "protected": default,
            "default": default,
            "developers_can_push": false,
            "developers_can_merge": false,
            "can_push": true,
            "web_url": format!("https://{host}/{path}/-/tree/{name}"),
        })
    }

    fn list_branches(&self, pid: u64, req: &Req<'_>) -> Reply {
        let project = &self.projects[&pid];
        let items = project
            .branches
            .keys()
            .map(|b| self.branch_json(project, b));
        self.page_reply(items.collect(), req)
    }

    fn list_mrs(&self, pid: u64, req: &Req<'_>) -> Reply {
        let params = parse_params(req.query);
        let param = |name: &str| last(&params, name);
        let state = param("state").unwrap_or("all");
        if !["opened", "closed", "locked", "merged", "all"].contains(&state) {
            return error_text(400, "state does not have a valid value");
        }
        let order_by = param("order_by").unwrap_or("created_at");
        if !["created_at", "updated_at"].contains(&order_by) {
            return error_text(400, "order_by does not have a valid value");
        }
        let sort = param("sort").unwrap_or("desc");
        if !["asc", "desc"].contains(&sort) {
            return error_text(400, "sort does not have a valid value");
        }
        let project = &self.projects[&pid];
        let mut mrs: Vec<&Mr> = project
            .mrs
            .values()
            .filter(|mr| match state {
                "opened" => mr.state == MrState::Opened,
                "closed" => mr.state == MrState::Closed,
                "merged" => mr.state == MrState::Merged,
                "locked" => false,
                _ => true,
            })
            .filter(|mr| param("target_branch").is_none_or(|b| b == mr.target_branch))
            .filter(|mr| param("source_branch").is_none_or(|b| b == mr.source_branch))
            .collect();
        match order_by {
            "updated_at" => mrs.sort_by_key(|mr| (mr.updated_at, mr.id)),
            _ => mrs.sort_by_key(|mr| (mr.created_at, mr.id)),
        }
        if sort == "desc" {
            mrs.reverse();
        }
        let items = mrs.into_iter().map(|mr| self.mr_json(project, mr));
        self.page_reply(items.collect(), req)
    }

    fn mr_json(&self, project: &Project, mr: &Mr) -> Value {
        let (host, path) = (&self.public_host, &project.path);
        let draft = draft_prefix_len(&mr.title).is_some();
        let detailed = match mr.state {
            MrState::Opened if draft && mr.merge_check == "mergeable" => "draft_status",
            MrState::Opened => mr.merge_check.as_str(),
            _ => "not_open",
        };
        let merge_status = legacy_merge_status(&mr.merge_check, self.legacy);
        let mut value = json!({
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": mr.description,
            "state": match mr.state {
                MrState::Opened => "opened",
                MrState::Closed => "closed",
                MrState::Merged => "merged",
            },
            "created_at": iso_millis(mr.created_at),
            "updated_at": iso_millis(mr.updated_at),
            "merged_at": mr.merged_at.map(iso_millis),
            "closed_at": mr.closed_at.map(iso_millis),
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "author": user_json(&mr.author, host),
            "assignees": [],
            "reviewers": [],
            "source_project_id": mr.source_project_id,
            "target_project_id": project.id,
            "labels": mr.labels,
            "work_in_progress": draft,
            "merge_when_pipeline_succeeds": false,
            "merge_status": merge_status,
            "sha": mr.sha,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": null,
            "user_notes_count": 0,
            "has_conflicts": mr.merge_check == "conflict",
            "blocking_discussions_resolved": true,
            "references": {
                "short": format!("!{}", mr.iid),
                "relative": format!("!{}", mr.iid),
                "full": format!("{path}!{}", mr.iid),
            },
            "web_url": format!("https://{host}/{path}/-/merge_requests/{}", mr.iid),
        });
        if !self.legacy {
            value["draft"] = json!(draft);
            value["detailed_merge_status"] = json!(detailed);
        }
        value
    }

    /// One page of `items` as a 200/304 with GitLab's pagination headers, or a 400 for
    /// malformed `page` / `per_page`.
    fn page_reply(&self, items: Vec<Value>, req: &Req<'_>) -> Reply {
        let params = parse_params(req.query);
        let number = |name: &'static str| match last(&params, name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| name),
        };
        let (page, per_page) = match (number("page"), number("per_page")) {
            (Ok(page), Ok(per_page)) => (page, per_page),
            (Err(name), _) | (_, Err(name)) => {
                return error_text(400, &format!("{name} is invalid"));
            }
        };
        let page = usize::try_from(page.unwrap_or(1)).map_or(1, |p| p.max(1));
        let per_page = per_page
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(20)
            .min(self.max_per_page);
        let total = items.len();
        let pages = total.div_ceil(per_page).max(1);
        let start = (page - 1).saturating_mul(per_page);
        let slice: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
        let has_next = start.saturating_add(per_page) < total;
        let counted = total <= MAX_COUNTED;
        let url = |n: usize| self.page_url(req, &params, n, per_page);
        let mut headers = vec![
            ("x-page", page.to_string()),
            ("x-per-page", per_page.to_string()),
            (
                "x-next-page",
                if has_next {
                    (page + 1).to_string()
                } else {
                    String::new()
                },
            ),
            (
                "x-prev-page",
                if page > 1 {
                    (page - 1).to_string()
                } else {
                    String::new()
                },
            ),
        ];
        if counted {
            headers.push(("x-total", total.to_string()));
            headers.push(("x-total-pages", pages.to_string()));
        }
        let mut rels = Vec::new();
        if page > 1 {
            rels.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
        }
        if has_next {
            rels.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        }
        rels.push(format!("<{}>; rel=\"first\"", url(1)));
        if counted {
            rels.push(format!("<{}>; rel=\"last\"", url(pages)));
        }
        headers.push(("link", rels.join(", ")));
        self.conditional(&Value::Array(slice), headers, req)
    }

    /// This request's URL for page `n`: the other parameters kept, `page` and `per_page`
    /// set, keys sorted (Rails' `to_query`).
    fn page_url(&self, req: &Req<'_>, params: &[(String, String)], n: usize, per: usize) -> String {
        let mut query: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .cloned()
            .collect();
        query.push(("page".to_owned(), n.to_string()));
        query.push(("per_page".to_owned(), per.to_string()));
        query.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = form_urlencoded::Serializer::new(String::new());
        out.extend_pairs(query);
        format!("{}{}?{}", self.base_url, req.path, out.finish())
    }

    /// `POST /projects/:id/trigger/pipeline` with form fields (or query parameters).
    fn trigger(&mut self, pid: u64, addressed: String, req: &Req<'_>) -> Reply {
        let mut params = parse_params(req.query);
        let form = req
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if form {
            params.extend(form_urlencoded::parse(req.body).into_owned());
        }
        let token = last(&params, "token").filter(|t| !t.is_empty());
        let git_ref = last(&params, "ref").filter(|r| !r.is_empty());
        let (Some(token), Some(git_ref)) = (token, git_ref) else {
            let missing: Vec<String> = [("token", token), ("ref", git_ref)]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| format!("{k} is missing"))
                .collect();
            return error_text(400, &missing.join(", "));
        };
        let project = &self.projects[&pid];
        let Some(trigger) = project.triggers.iter().find(|t| t.token == token) else {
            return error_message(404, json!("404 Not Found"));
        };
        if !trigger.refs.iter().any(|r| r == git_ref) {
            return error_message(400, json!({"base": ["Reference not found"]}));
        }
        let variables = params.iter().filter_map(|(k, v)| {
            let key = k.strip_prefix("variables[")?.strip_suffix(']')?;
            Some((key.to_owned(), v.clone()))
        });
        let sha = project.branches.get(git_ref).map(|c| c.sha.clone());
        let web_base = format!("https://{}/{}", self.public_host, project.path);
        let project_id = project.id;
        self.next_pipeline_id += 1;
        let id = self.next_pipeline_id;
        let record = PipelineTrigger {
            project: addressed,
            token: token.to_owned(),
            git_ref: git_ref.to_owned(),
            variables: variables.collect(),
            id,
            sha: sha.clone(),
            created: self.clock,
        };
        let now = iso_millis(self.clock);
        let body = json!({
            "id": id,
            "iid": self.pipelines.len() + 1,
            "project_id": project_id,
            "sha": sha,
            "ref": git_ref,
            "status": "created",
            "source": "trigger",
            "tag": false,
            "created_at": now,
            "updated_at": now,
            "web_url": format!("{web_base}/-/pipelines/{id}"),
        });
        self.pipelines.push(record);
        json_reply(201, &body)
    }
}

/// The route a `/projects/:id/...` tail names; branch names and iids are one segment.
fn classify<'a>(tail: &[&'a str]) -> Option<Route<'a>> {
    match tail {
        [] => Some(Route::Project),
        ["repository", "branches"] => Some(Route::Branches),
        ["repository", "branches", name] if !name.is_empty() => Some(Route::Branch(name)),
        ["merge_requests"] => Some(Route::MergeRequests),
        ["merge_requests", iid] if !iid.is_empty() => Some(Route::MergeRequest(iid)),
        ["trigger", "pipeline"] => Some(Route::Trigger),
        ["statuses", sha] if !sha.is_empty() => Some(Route::Status(sha)),
        _ => None,
    }
}

/// `merge_status` as derived from the mergeability check; legacy servers had no `checking`.
fn legacy_merge_status(check: &str, legacy: bool) -> &'static str {
    match check {
        "mergeable"
        | "draft_status"
        | "ci_must_pass"
        | "ci_still_running"
        | "discussions_not_resolved"
        | "not_approved"
        | "blocked_status" => "can_be_merged",
        "unchecked" | "preparing" => "unchecked",
        "checking" if legacy => "unchecked",
        "checking" => "checking",
        _ => "cannot_be_merged",
    }
}

fn user_json(username: &str, host: &str) -> Value {
    let digest = Sha256::digest(format!("user:{username}"));
    let id = u64::from(u16::from_be_bytes([digest[0], digest[1]])) + 100;
    let mut name = username.to_owned();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    json!({
        "id": id,
        "username": username,
        "name": name,
        "state": "active",
        "locked": false,
        "avatar_url": null,
        "web_url": format!("https://{host}/{username}"),
    })
}

fn parse_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The last value of `name` (the one Rack keeps).
fn last<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn route_not_found() -> Reply {
    error_text(404, "404 Not Found")
}

fn not_allowed() -> Reply {
    error_text(405, "405 Not Allowed")
}
