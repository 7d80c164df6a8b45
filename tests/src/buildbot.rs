//! A real Buildbot master (4.3, from the venv `.ci/test` installs) for end-to-end tests
//! of the loop forgewatch closes: changes in through the `base` change hook, builds run by
//! a `LocalWorker`, results back through an `HttpStatusPush` reporter. Nothing here fakes
//! Buildbot; the master is created with `buildbot create-master`, configured by the
//! `master.cfg` below and run with `buildbot start --nodaemon` in its own process group,
//! killed when the handle drops.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Where `.ci/test` installs Buildbot unless `FORGEWATCH_BUILDBOT_VENV` says otherwise.
const DEFAULT_VENV: &str = ".cache/forgewatch/buildbot-4.3";
/// The command that installs it (named in the error when it is missing).
const INSTALL: &str = "python3 -m venv DIR && DIR/bin/pip install buildbot==4.3.0 \
                       buildbot-www==4.3.0 buildbot-worker==4.3.0";
/// The file of the master directory that lists the revisions whose build fails.
const FAIL_REVISIONS: &str = "fail-revisions";
/// A loaded machine can take more than 10 s to start a master.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How the `HttpStatusPush` reporter authenticates to the results endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusPushAuth {
    None,
    /// `auth=(user, password)`: HTTP Basic.
    Basic {
        user: String,
        password: String,
    },
    /// `headers={'Authorization': 'Bearer TOKEN'}`.
    Bearer(String),
}

#[derive(Clone, Debug)]
pub struct BuildbotOptions {
    /// Where the master posts every build's start and end.
    pub status_push_url: String,
    pub status_push_auth: StatusPushAuth,
    /// `Some((user, password))`: the change hook asks for HTTP Basic, as forgewatch's
    /// `buildbot` target sends with `basic_auth: {user, password_file}`.
    pub change_hook_auth: Option<(String, String)>,
}

/// A running master; dropping it kills its process group.
pub struct RealBuildbot {
    /// Declared first: the master dies before its directory is removed.
    process: ProcessGroup,
    dir: tempfile::TempDir,
    port: u16,
}

/// A child leading its own process group, killed with the group on drop.
struct ProcessGroup(Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let pid = i32::try_from(self.0.id()).unwrap_or(i32::MAX);
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl RealBuildbot {
    /// Creates a master in a temporary directory and starts it; returns once its local
    /// worker is connected (so a change starts a build at once).
    pub async fn start(options: BuildbotOptions) -> anyhow::Result<RealBuildbot> {
        let buildbot = buildbot_executable(&venv())?;
        let dir = tempfile::Builder::new().prefix("buildbot-").tempdir()?;
        let master = dir.path().join("master");
        let created = tokio::process::Command::new(&buildbot)
            .arg("create-master")
            .arg(&master)
            .output()
            .await
            .with_context(|| format!("cannot run {}", buildbot.display()))?;
        if !created.status.success() {
            bail!(
                "`buildbot create-master` failed: {}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
        std::fs::write(master.join(FAIL_REVISIONS), "")?;
        if let Some((user, password)) = &options.change_hook_auth {
            std::fs::write(
                master.join("changehook.passwd"),
                format!("{user}:{password}\n"),
            )?;
        }
        // A port picked by binding port 0 can be taken again before the master binds it:
        // one retry with another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            std::fs::write(
                master.join("master.cfg"),
                master_cfg(&master, port, &options),
            )?;
            let child = Command::new(&buildbot)
                .args(["start", "--nodaemon"])
                .arg(&master)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(master.join("console.log"))?)
                .stderr(std::fs::File::create(master.join("console.err"))?)
                .process_group(0)
                .spawn()
                .with_context(|| format!("cannot run {} start", buildbot.display()))?;
            let mut process = ProcessGroup(child);
            match wait_ready(&mut process.0, &master, port).await {
                Ok(()) => return Ok(RealBuildbot { process, dir, port }),
                Err(e) if attempt == 1 && bind_failed(&master) => {
                    eprintln!("buildbot could not bind port {port}, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `http://127.0.0.1:PORT/change_hook/base`.
    pub fn change_hook_url(&self) -> String {
        format!("{}change_hook/base", self.www_url())
    }

    /// `http://127.0.0.1:PORT/`, also the master's `buildbotURL`.
    pub fn www_url(&self) -> String {
        www_url(self.port)
    }

    /// The master's directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("master")
    }

    /// Makes the builds of these revisions fail from now on (read when the step runs).
    pub fn set_failing(&self, revisions: &[&str]) -> anyhow::Result<()> {
        let mut lines = revisions.join("\n");
        lines.push('\n');
        std::fs::write(self.dir().join(FAIL_REVISIONS), lines)?;
        Ok(())
    }

    /// The master's `twistd.log`, for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.dir())
    }

    /// The master's process id (its process group's too).
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

fn www_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/")
}

fn read_log(master: &Path) -> String {
    std::fs::read_to_string(master.join("twistd.log")).unwrap_or_default()
}

fn bind_failed(master: &Path) -> bool {
    let log = read_log(master);
    log.contains("CannotListenError") || log.contains("Address already in use")
}

/// Polls the REST API until the local worker is connected, for [`START_TIMEOUT`]
/// (or until the master exits).
async fn wait_ready(child: &mut Child, master: &Path, port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let workers = format!("{}api/v2/workers", www_url(port));
    let ready = crate::wait::eventually_every(Duration::from_millis(200), START_TIMEOUT, || {
        let exited = child.try_wait();
        let (http, workers) = (&http, &workers);
        async move {
            match exited {
                Ok(Some(status)) => Some(Err(anyhow::anyhow!(
                    "buildbot exited ({status}) before it was ready:\n{}",
                    read_log(master)
                ))),
                Err(e) => Some(Err(e.into())),
                Ok(None) => worker_connected(http, workers).await.then_some(Ok(())),
            }
        }
    })
    .await;
    ready.unwrap_or_else(|| {
        bail!(
            "buildbot was not ready within {START_TIMEOUT:?}:\n{}",
            read_log(master)
        )
    })
}

/// `$FORGEWATCH_BUILDBOT_VENV`, else `$HOME/.cache/forgewatch/buildbot-4.3`.
pub fn venv() -> PathBuf {
    match std::env::var_os("FORGEWATCH_BUILDBOT_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(DEFAULT_VENV),
    }
}

/// `VENV/bin/buildbot`, or an error naming the command that installs it.
pub fn buildbot_executable(venv: &Path) -> anyhow::Result<PathBuf> {
    let buildbot = venv.join("bin/buildbot");
    if buildbot.is_file() {
        return Ok(buildbot);
    }
    bail!(
        "Buildbot 4.3 is not installed at {} (set FORGEWATCH_BUILDBOT_VENV, or run `.ci/test`, \
         which installs it, or by hand, with DIR={}: `{INSTALL}`)",
        buildbot.display(),
        venv.display()
    )
}

async fn worker_connected(http: &reqwest::Client, url: &str) -> bool {
    let Ok(response) = http.get(url).send().await else {
        return false;
    };
    let Ok(body) = response.bytes().await else {
        return false;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return false;
    };
    json["workers"]
        .as_array()
        .and_then(|w| w.first())
        .and_then(|w| w["connected_to"].as_array())
        .is_some_and(|masters| !masters.is_empty())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A Python string literal (JSON's escapes are Python's).
fn py(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The master's configuration: one builder whose step fails for the revisions listed in
/// `fail-revisions`, started at once by any change, reporting every build's start and end.
fn master_cfg(master: &Path, port: u16, options: &BuildbotOptions) -> String {
    let fail_file = py(&master.join(FAIL_REVISIONS).display().to_string());
    let change_hook_auth = match &options.change_hook_auth {
        Some(_) => format!(
            "\n    'change_hook_auth': [strcred.makeChecker('file:' + {})],",
            py(&master.join("changehook.passwd").display().to_string())
        ),
        None => String::new(),
    };
    let push_auth = match &options.status_push_auth {
        StatusPushAuth::None => String::new(),
        StatusPushAuth::Basic { user, password } => {
            format!("\n    auth=({}, {}),", py(user), py(password))
        }
        StatusPushAuth::Bearer(token) => format!(
            "\n    headers={{'Authorization': 'Bearer ' + {}}},",
            py(token)
        ),
    };
    let push_url = py(&options.status_push_url);
    format!(
        r#"# Written by forgewatch-tests (tests/src/buildbot.rs).
from buildbot.plugins import changes, reporters, schedulers, steps, util, worker
from twisted.cred import strcred

c = BuildmasterConfig = {{}}
c['buildbotNetUsageData'] = None
c['title'] = 'forgewatch-tests'
c['buildbotURL'] = 'http://127.0.0.1:{port}/'
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['workers'] = [worker.LocalWorker('local')]
c['protocols'] = {{'null': {{}}}}
c['collapseRequests'] = False
c['schedulers'] = [
    schedulers.AnyBranchScheduler(name='changes', treeStableTimer=None, builderNames=['build']),
]

factory = util.BuildFactory()
factory.addStep(steps.ShellCommand(
    name='check',
    command=['sh', '-c', 'if grep -qxF "$REVISION" "$FAIL_FILE"; then echo "$REVISION fails"; exit 1; fi'],
    env={{'REVISION': util.Property('revision'), 'FAIL_FILE': {fail_file}}},
))
c['builders'] = [util.BuilderConfig(name='build', workernames=['local'], factory=factory)]

c['www'] = {{
    'port': 'tcp:{port}:interface=127.0.0.1',
    'change_hook_dialects': {{'base': True}},{change_hook_auth}
}}

# What connects a Buildbot back to forgewatch (README, "Results from Buildbot").
c['services'] = [reporters.HttpStatusPush(
    serverUrl={push_url},{push_auth}
    generators=[reporters.BuildStatusGenerator(
        mode='all',
        report_new=True,
        message_formatter=reporters.MessageFormatterFunction(lambda context: context['build'], 'json'),
    )],
)]
"#
    )
}
