//! End-to-end: what one client can hold of `forgewatch run`'s HTTP server (issue 14,
//! item 1; SPEC §10). A flood of slow clients against a daemon started with the soft
//! open-file limit a service usually gets (1,024) leaves `/healthz` and deliveries to
//! others; a connection beyond `http.max_connections` is closed at once, and the slots
//! of slow clients serve others once they time out; an idle, a slow-header and a
//! slow-body connection are each closed after their timeout.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAIN: &str = "main";

/// `poll_interval` of the tests' configuration.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The clients of the flood.
const SLOW_CLIENTS: usize = 1_100;

/// Runs the daemon with the soft open-file limit systemd gives a service by default.
const SERVICE_FD_LIMIT: &[&str] = &["sh", "-c", "ulimit -S -n 1024 && exec \"$@\"", "sh"];

/// What a slow client sends, a byte at a time, before it sends `a`s forever: a
/// request whose headers never end.
const SLOW_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

/// `acme/app` built by two workspaces: `app` on Buildbot (HTTP) and `scripted` on
/// the command target, whose script appends each payload, as a line, to
/// `deliveries.jsonl` (a delivery that needs new descriptors: pipes); `limits`
/// (lines of `http:`) added.
fn two_workspaces(env: &Env, limits: &str) {
    env.github.create_repo("acme/app", MAIN);
    let app = "{ name: app, repo: 'https://github.com/acme/app', branch: main }";
    env.configure_yaml(&format!(
        "  - name: app\n    ci: bb\n    packages: [ {app} ]\n    pull_requests: {{ enabled: false }}\n\
         \x20 - name: scripted\n    ci: script\n    packages: [ {app} ]\n    pull_requests: {{ enabled: false }}\n"
    ));
    let script = "{ cat; echo; } >> deliveries.jsonl\n";
    std::fs::write(env.dir.path().join("ci-script.sh"), script).unwrap();
    let path = env.config_path();
    let config = std::fs::read_to_string(&path).unwrap();
    let http = "http:\n  listen: 127.0.0.1:0\n";
    assert!(config.contains(http), "{config}");
    std::fs::write(&path, config.replace(http, &format!("{http}{limits}"))).unwrap();
}

/// The lines of `deliveries.jsonl` once there are `count`, within `within`.
async fn scripted_deliveries(env: &Env, count: usize, within: Duration) -> Option<Vec<String>> {
    let file = env.dir.path().join("deliveries.jsonl");
    forgewatch_tests::wait::eventually(within, || async {
        let text = std::fs::read_to_string(&file).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= count).then_some(lines)
    })
    .await
}

/// This process opens the flood's sockets: its soft open-file limit goes up to the hard one.
fn raise_own_fd_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 3 * SLOW_CLIENTS as u64,
        "the hard open-file limit ({hard}) is too low for {SLOW_CLIENTS} clients"
    );
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `count` connections that have sent the first byte of [`SLOW_HEAD`].
async fn connect_slow(address: &str, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(&SLOW_HEAD[..1]).await.unwrap();
        streams.push(stream);
    }
    streams
}

/// Sends the next byte of [`SLOW_HEAD`] (then `a`s) on every stream every 100 ms,
/// as a slow client does, until aborted.
fn drip(mut streams: Vec<TcpStream>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        for sent in 1.. {
            ticks.tick().await;
            let byte = SLOW_HEAD.get(sent).copied().unwrap_or(b'a');
            for stream in &mut streams {
                // A stream the server closed fails; the others go on.
                let _ = stream.write_all(&[byte]).await;
            }
        }
    })
}

/// What the server sent on `stream` until it closed the connection (end of stream
/// or reset); `None` if it was still open after `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Whether `stream` is still open with nothing to read.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The issue: 1,100 slow clients took `/healthz` down for ~55 s and made deliveries
/// fail with "Too many open files" (the daemon kept the 1,024 soft limit and never
/// timed a client out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_clients_leaves_healthz_and_deliveries_to_others() {
    raise_own_fd_limit();
    let env = Env::new().await;
    two_workspaces(&env, "");
    let daemon = env.command_via(SERVICE_FD_LIMIT, &["run"]).spawn().unwrap();
    let address = env.listen_address().await;
    assert!(
        env.ci.wait_for_accepted(1, DEADLINE).await,
        "first delivery"
    );
    // The shell `exec`s the daemon: same process, which raised its soft limit.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.id().unwrap())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert_eq!(
        open_files[..2],
        [hard.to_string(), hard.to_string()],
        "{limits}"
    );
    assert!(scripted_deliveries(&env, 1, DEADLINE).await.is_some());
    let http = http_client();
    let healthz = format!("http://{address}/healthz");

    let flood = drip(connect_slow(&address, SLOW_CLIENTS).await);
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(1), http.get(&healthz).send()).await;
    let elapsed = started.elapsed();
    let answer = answer
        .unwrap_or_else(|_| {
            panic!("/healthz did not answer within 1 s of {SLOW_CLIENTS} slow clients")
        })
        .unwrap();
    assert_eq!(answer.status(), 200, "after {elapsed:?}");
    assert_eq!(answer.text().await.unwrap(), "ok\n");

    // Within poll_interval + 1 s of the push, on both targets.
    let head = env.github.push("acme/app", MAIN);
    let within = POLL_INTERVAL + Duration::from_secs(1);
    let over_http = env.ci.wait_for_accepted(2, within);
    let (over_http, scripted) = tokio::join!(over_http, scripted_deliveries(&env, 2, within));
    assert!(over_http, "the push was not delivered to Buildbot in time");
    assert_eq!(env.ci.accepted()[1].field("revision"), Some(head.as_str()));
    let scripted = scripted.expect("the push was not delivered to the command target in time");
    assert!(scripted[1].contains(&head), "{}", scripted[1]);
    flood.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_is_closed_at_once_and_slow_ones_free_their_slots() {
    let env = Env::new().await;
    two_workspaces(&env, "  max_connections: 8\n  header_timeout: 5s\n");
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    let address = env.listen_address().await;

    let mut slow = connect_slow(&address, 8).await;
    let mut ninth = TcpStream::connect(&address).await.unwrap();
    // The server may have closed it already; then writing fails, which is the point.
    let _ = ninth
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let answer = until_closed(&mut ninth, DEADLINE).await;
    assert_eq!(
        answer.as_deref(),
        Some(""),
        "the ninth connection is closed unanswered"
    );
    let held = slow.iter().filter(|s| still_open(s)).count();
    assert_eq!(
        held, 8,
        "the slow clients keep their slots until they time out"
    );

    for stream in &mut slow {
        let sent = until_closed(stream, DEADLINE).await;
        assert_eq!(
            sent.as_deref(),
            Some(""),
            "a slow client is closed, unanswered"
        );
    }
    let answer = http_client()
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    kill(Pid::from_raw(daemon.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, daemon.wait()).await.unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_header_and_slow_body_connections_are_closed_after_their_timeouts() {
    let env = Env::new().await;
    two_workspaces(&env, "  header_timeout: 2s\n  body_timeout: 2s\n");
    let mut daemon = env.command(&["run"]).spawn().unwrap();
    let address = env.listen_address().await;
    // Ten times the timeouts: long enough on a busy machine, short enough to fail.
    let within = Duration::from_secs(20);

    // Kept alive after an answer, then idle.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Headers that never end.
    let mut header = TcpStream::connect(&address).await.unwrap();
    header
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
        .await
        .unwrap();
    // A body that never ends.
    let mut body = TcpStream::connect(&address).await.unwrap();
    body.write_all(
        format!("POST /hooks/github HTTP/1.1\r\nHost: {address}\r\nContent-Length: 100\r\n\r\n{{\"zen\":")
            .as_bytes(),
    )
    .await
    .unwrap();

    let sent = until_closed(&mut idle, within)
        .await
        .expect("idle connection still open");
    assert!(sent.starts_with("HTTP/1.1 200 OK\r\n"), "{sent}");
    assert!(
        sent.ends_with("\r\n\r\nok\n"),
        "one answer, then closed: {sent}"
    );
    let sent = until_closed(&mut header, within).await;
    assert_eq!(
        sent.as_deref(),
        Some(""),
        "slow headers: closed, unanswered"
    );
    let sent = until_closed(&mut body, within)
        .await
        .expect("slow body still open");
    assert!(
        sent.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{sent}"
    );
    assert!(
        sent.ends_with(r#"{"error":"the request body did not arrive within 2s"}"#),
        "{sent}"
    );

    kill(Pid::from_raw(daemon.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, daemon.wait()).await.unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
}
