//! The client side of the HTTP API: `forgewatch status` and `forgewatch trigger`
//! talk to a running daemon, found through the configuration's `http.listen` (or
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

pub async fn status(url: &str, _config: Option<&Config>, json: bool) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/status", url.trim_end_matches('/'));
    let response = client()?
        .get(&url)
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
