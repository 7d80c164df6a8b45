//! Headless Chromium driven over its DevTools protocol on a pipe, for the tests that
//! watch a page change after it loaded (the status page following the event
//! stream). `--dump-dom` dumps once, right after the load, and a page holding a
//! stream open never lets `--virtual-time-budget` run out (virtual time waits for
//! pending requests), so neither can see a change that arrives later. With
//! `--remote-debugging-pipe` the browser reads requests on descriptor 3 and writes
//! answers on descriptor 4, each a JSON message ended by a NUL byte; here they are
//! two FIFOs that `sh` opens for it (no descriptors passed by hand, no unsafe
//! code). A test evaluates expressions in the page ([`Browser::evaluate`]) and
//! polls a condition with a deadline (`wait::eventually`), never a sleep.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::Mutex;

/// The flags every headless run takes: a fresh profile, no sandbox (tests run as
/// root), and nothing reaching out to the network by itself.
pub const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
];

/// A browser with one page open. Its calls take `&self` (one at a time), so a
/// polling closure can evaluate in the page.
pub struct Browser {
    child: tokio::process::Child,
    pipes: Mutex<Pipes>,
    session: String,
    /// Every answer awaited for at most this long.
    timeout: Duration,
    _dir: tempfile::TempDir,
}

/// The two ends of the DevTools pipe and the last request id.
struct Pipes {
    to: pipe::Sender,
    from: BufReader<pipe::Receiver>,
    next_id: u64,
}

impl Browser {
    /// Starts `chromium` (the binary) headless and opens `url` in a page.
    pub async fn open(chromium: &Path, url: &str, timeout: Duration) -> anyhow::Result<Browser> {
        let dir = tempfile::tempdir()?;
        let (requests, answers) = (dir.path().join("requests"), dir.path().join("answers"));
        for fifo in [&requests, &answers] {
            nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::S_IRWXU)
                .with_context(|| format!("mkfifo {}", fifo.display()))?;
        }
        // Read-write ends never block on opening, whichever side opens first.
        let to = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&requests)?;
        let from = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&answers)?;
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(r#"requests=$1; answers=$2; shift 2; exec "$@" 3<"$requests" 4>"$answers""#)
            .arg("sh")
            .arg(&requests)
            .arg(&answers)
            .arg(chromium)
            .args(HEADLESS)
            .arg("--remote-debugging-pipe")
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start chromium")?;
        let mut browser = Browser {
            child,
            pipes: Mutex::new(Pipes {
                to,
                from: BufReader::new(from),
                next_id: 0,
            }),
            session: String::new(),
            timeout,
            _dir: dir,
        };
        let target = browser
            .call(None, "Target.createTarget", json!({ "url": url }))
            .await?;
        let target = target["targetId"].clone();
        let attached = browser
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session in {attached}"))?
            .to_owned();
        Ok(browser)
    }

    /// The value of `expression` evaluated in the page (JSON: a test returns
    /// `JSON.stringify`-able values); an exception is an error.
    pub async fn evaluate(&self, expression: &str) -> anyhow::Result<Value> {
        let answer = self
            .call(
                Some(&self.session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await?;
        if let Some(exception) = answer.get("exceptionDetails") {
            bail!("{expression}: {exception}");
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Closes the browser and waits for it to exit.
    pub async fn close(mut self) {
        let _ = self.call(None, "Browser.close", json!({})).await;
        if tokio::time::timeout(self.timeout, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Sends one request and returns its answer's `result`, skipping the events
    /// the browser sends in between.
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let mut pipes = self.pipes.lock().await;
        pipes.next_id += 1;
        let id = pipes.next_id;
        let mut request = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            request["sessionId"] = json!(session);
        }
        let mut bytes = request.to_string().into_bytes();
        bytes.push(0);
        pipes.to.write_all(&bytes).await?;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            loop {
                let mut message = Vec::new();
                if pipes.from.read_until(0, &mut message).await? == 0 {
                    bail!("chromium closed its pipe");
                }
                message.pop();
                let message: Value = serde_json::from_slice(&message)?;
                if message["id"] != id {
                    continue;
                }
                if let Some(error) = message.get("error") {
                    bail!("{method}: {error}");
                }
                return Ok(message["result"].clone());
            }
        })
        .await
        .map_err(|_| anyhow!("no answer to {method} within {timeout:?}"))?
    }
}
