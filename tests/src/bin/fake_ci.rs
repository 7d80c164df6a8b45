//! `fake-ci`: a Buildbot-compatible change hook receiver that prints each accepted change.
//!
//! The README walkthrough needs something to point forgewatch at without installing
//! Buildbot: this serves `POST /change_hook/base` (and the signed `/hook` webhook) with the
//! same strictness as the test fake and shows what forgewatch delivered.
//!
//! Usage: `fake-ci [--listen 127.0.0.1:8010]`; runs until Ctrl-C.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use forgewatch_tests::fake_ci::{Delivery, Endpoint, FakeCi};

const USAGE: &str = "usage: fake-ci [--listen ADDR]   (default 127.0.0.1:8010)";

fn parse_args() -> anyhow::Result<Option<SocketAddr>> {
    let mut listen = "127.0.0.1:8010".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        } else if arg == "--listen" {
            listen = args.next().context("--listen needs an address")?;
        } else if let Some(value) = arg.strip_prefix("--listen=") {
            listen = value.to_owned();
        } else {
            bail!("unexpected argument {arg:?}\n{USAGE}");
        }
    }
    let addr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an IP:PORT address"))?;
    Ok(Some(addr))
}

fn describe(index: usize, delivery: &Delivery) -> String {
    let properties = serde_json::to_string_pretty(&delivery.properties())
        .unwrap_or_else(|e| format!("<unprintable: {e}>"));
    let properties = properties.replace('\n', "\n    ");
    match delivery.endpoint {
        Endpoint::Buildbot => {
            let field = |name| delivery.field(name).unwrap_or("");
            format!(
                "=== change #{index} (Buildbot change hook)\n\
                 project:    {}\ncategory:   {}\nrepository: {}\nbranch:     {}\n\
                 revision:   {}\nproperties:\n    {properties}\n",
                field("project"),
                field("category"),
                field("repository"),
                field("branch"),
                field("revision"),
            )
        }
        Endpoint::Webhook => {
            let header = |name| delivery.header(name).unwrap_or("");
            format!(
                "=== delivery #{index} (webhook)\nevent:      {}\ndelivery:   {}\nbody:\n    {properties}\n",
                header("x-forgewatch-event"),
                header("x-forgewatch-delivery"),
            )
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(addr) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let ci = FakeCi::start_on(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("fake-ci: Buildbot change hook at {}", ci.buildbot_url());
    println!("fake-ci: webhook receiver at     {}", ci.webhook_url());
    let mut accepted = ci.subscribe();
    let mut printed = 0;
    loop {
        tokio::select! {
            signal = tokio::signal::ctrl_c() => {
                signal.context("cannot wait for Ctrl-C")?;
                break;
            }
            changed = accepted.changed() => {
                if changed.is_err() {
                    break;
                }
                for delivery in ci.accepted().iter().skip(printed) {
                    printed += 1;
                    println!("{}", describe(printed, delivery));
                }
            }
        }
    }
    println!(
        "fake-ci: {printed} accepted, {} rejected",
        ci.rejected_count()
    );
    Ok(())
}
