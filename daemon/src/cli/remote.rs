//! The client side of the HTTP API: `forgewatch status`, `forgewatch trigger` and
//! `forgewatch builds` talk to a running daemon, found through the configuration's `http.listen` (or
//! the address it recorded in `state_dir` when it listens on port 0), or `--url`.

use anyhow::Context as _;

use crate::config::Config;
use crate::service::LISTEN_ADDRESS_FILE;

/// The daemon's API URL for this configuration.
pub fn api_url(config: &Config) -> String {
    if config.http.listen.port() == 0
        && let Ok(address) = std::fs::read_to_string(config.state_dir.join(LISTEN_ADDRESS_FILE))
    {
        return format!("http://{}", address.trim());
    }
    format!("http://{}", config.http.listen)
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// GETs `url` and reads its JSON answer; an HTTP error is the daemon's message.
async fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let response = client()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("is forgewatch running? {url}"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .context("reading the daemon's answer")?;
    let body: serde_json::Value =
        serde_json::from_slice(&bytes).context("the daemon's answer is not JSON")?;
    if !status.is_success() {
        anyhow::bail!(
            "{url}: HTTP {status}: {}",
            body["error"].as_str().unwrap_or("")
        );
    }
    Ok(body)
}

/// The filters of `forgewatch builds`.
#[derive(Debug, Default)]
pub struct BuildsQuery {
    pub workspace: Option<String>,
    pub state: Option<String>,
    pub limit: Option<u32>,
}

/// `forgewatch builds`: the history's deliveries, newest first, one per line
/// (time, build, state, CI link or summary), or the API's JSON.
pub async fn builds(url: &str, query: &BuildsQuery, json: bool) -> anyhow::Result<()> {
    let base = format!("{}/api/v1/builds", url.trim_end_matches('/'));
    let limit = query.limit.map(|l| l.to_string());
    let params = [
        ("workspace", query.workspace.as_deref()),
        ("state", query.state.as_deref()),
        ("limit", limit.as_deref()),
    ];
    let url =
        url::Url::parse_with_params(&base, params.iter().filter_map(|(k, v)| Some((*k, (*v)?))))
            .with_context(|| format!("not a URL: {base}"))?;
    let body = get_json(url.as_str()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!("{:<24} {:<50} {:<10} RESULT", "DELIVERED", "BUILD", "STATE");
    for build in body.as_array().into_iter().flatten() {
        let text = |name: &str| build[name].as_str().unwrap_or("");
        let state = build["state"].as_str().unwrap_or("no result");
        let result = match (text("url"), text("summary")) {
            ("", summary) => summary.to_owned(),
            (url, "") => url.to_owned(),
            (url, summary) => format!("{url} ({summary})"),
        };
        println!(
            "{:<24} {:<50} {state:<10} {result}",
            text("delivered_at"),
            text("build_key")
        );
    }
    Ok(())
}

pub async fn status(url: &str, _config: Option<&Config>, json: bool) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/status", url.trim_end_matches('/'));
    let body = get_json(&url).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!(
        "ready: {}, cycles: {}, last cycle: {}",
        body["ready"],
        body["cycles"],
        body["last_cycle_at"].as_str().unwrap_or("never")
    );
    if let Some(error) = body["config_error"].as_str() {
        println!("configuration not reloaded: {error}");
    }
    for (name, forge) in body["forges"].as_object().into_iter().flatten() {
        println!(
            "forge {name}: {} fresh, {} not modified, {} failed, rate limit {}/{}{}",
            forge["requests_fresh"],
            forge["requests_not_modified"],
            forge["requests_failed"],
            forge["rate_limit_remaining"],
            forge["rate_limit"],
            forge["paused_until"]
                .as_str()
                .map(|t| format!(", paused until {t}"))
                .unwrap_or_default()
        );
    }
    println!("{:<50} {:<12} DETAIL", "BUILD", "STATE");
    for (_, ws) in body["workspaces"].as_object().into_iter().flatten() {
        for build in ws["builds"].as_array().into_iter().flatten() {
            let state = if !build["pending"].is_null() {
                "pending"
            } else if build["delivered_fingerprint"] == build["fingerprint"] {
                "delivered"
            } else {
                "changed"
            };
            let detail = build["pending"]["last_error"]
                .as_str()
                .or(build["delivered_at"].as_str())
                .unwrap_or("");
            println!(
                "{:<50} {state:<12} {detail}",
                build["build_key"].as_str().unwrap_or("")
            );
        }
        for nb in ws["not_built"].as_array().into_iter().flatten() {
            println!(
                "{:<50} {:<12} {}",
                nb["build_key"].as_str().unwrap_or(""),
                "not built",
                nb["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// `forgewatch reload` (the unit's `ExecReload=`): asks the running daemon to read
/// its configuration again and returns its verdict, an error with the reason when
/// the new file is refused, so `systemctl reload` fails visibly. With an admin
/// token it asks `POST /api/v1/reload`; without one it sends SIGHUP to `pid` (or the
/// pid in `state_dir/lock`) and waits for the `reloaded` or `reload_failed` event.
pub async fn reload(url: &str, config: &Config, pid: Option<i32>) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    if let Some(token) = &config.http.admin_token {
        let url = format!("{base}/api/v1/reload");
        let response = client()?
            .post(&url)
            .bearer_auth(token.expose())
            .send()
            .await
            .with_context(|| format!("is forgewatch running? {url}"))?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "the configuration was not reloaded: {}",
                answer["error"].as_str().unwrap_or(status.as_str())
            );
        }
        println!("configuration reloaded");
        return Ok(());
    }
    let pid: i32 = match pid {
        Some(pid) => pid,
        None => {
            let lock = config.state_dir.join(crate::state::lock::PID_FILE);
            std::fs::read_to_string(&lock)
                .with_context(|| format!("is forgewatch running? cannot read {}", lock.display()))?
                .trim()
                .parse()
                .with_context(|| format!("{} holds no pid", lock.display()))?
        }
    };
    // A millisecond early: `since` keeps only later events, and the reload's may be
    // recorded within the millisecond the signal is sent.
    let before = std::time::SystemTime::now() - std::time::Duration::from_millis(1);
    let since = humantime::format_rfc3339_millis(before).to_string();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("cannot send SIGHUP to forgewatch (pid {pid})"))?;
    let events = url::Url::parse_with_params(
        &format!("{base}/api/v1/events"),
        [("since", since.as_str())],
    )
    .with_context(|| format!("not a URL: {base}"))?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut wait = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        wait.tick().await;
        let listed = get_json(events.as_str()).await?;
        for event in listed.as_array().into_iter().flatten() {
            match event["kind"].as_str() {
                Some("reloaded") => {
                    println!("configuration reloaded");
                    return Ok(());
                }
                Some("reload_failed") => anyhow::bail!(
                    "the configuration was not reloaded: {}",
                    event["message"].as_str().unwrap_or("")
                ),
                _ => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("forgewatch (pid {pid}) did not report a reload within 60 s");
        }
    }
}

pub async fn trigger(
    url: &str,
    config: Option<&Config>,
    workspace: &str,
    pr: Option<&str>,
) -> anyhow::Result<()> {
    let token = match config.and_then(|c| c.http.admin_token.as_ref()) {
        Some(t) => t.expose().to_owned(),
        None => std::env::var("FORGEWATCH_ADMIN_TOKEN")
            .context("no admin token: set http.admin_token_file in the configuration or FORGEWATCH_ADMIN_TOKEN")?,
    };
    let url = format!(
        "{}/api/v1/workspaces/{workspace}/trigger",
        url.trim_end_matches('/')
    );
    let body = match pr {
        Some(pr) => serde_json::json!({ "pr": pr }).to_string(),
        None => String::new(),
    };
    let response = client()?
        .post(&url)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .with_context(|| format!("is forgewatch running? {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("HTTP {status}: {}", answer["error"].as_str().unwrap_or(""));
    }
    println!(
        "{}\ttriggered\t{}",
        answer["build_key"].as_str().unwrap_or(workspace),
        answer["delivery_id"].as_str().unwrap_or("")
    );
    Ok(())
}
