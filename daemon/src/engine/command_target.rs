//! The `command` CI target: a local program, run with the workspace runner in its
//! own process group with forgewatch's secrets removed from its environment, gets
//! the trigger's JSON on stdin; exit 0 means the build was accepted. A program that
//! ran the build itself may print its result as one JSON line on stdout (SPEC §14:
//! the generic result, its delivery implied); a line that cannot be read is logged
//! and the delivery stays accepted. It lives in the
//! daemon because the adapters crate must not depend on the workspace runner.

use std::path::PathBuf;
use std::time::Duration;

use forgewatch_adapters::BoxFuture;
use forgewatch_adapters::ci::{Accepted, BuildTrigger, CiTarget, DeliveryError};
use forgewatch_adapters::results::generic::result_line;
use forgewatch_workspace_runner::process::{self, Job, LogLine, Stream, Termination};
use tokio_util::sync::CancellationToken;

const KILL_GRACE: Duration = Duration::from_secs(5);

pub struct CommandTarget {
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Where it runs: the configuration file's directory.
    pub dir: PathBuf,
    pub secret_env_vars: Vec<String>,
}

impl CiTarget for CommandTarget {
    fn deliver<'a>(
        &'a self,
        trigger: &'a BuildTrigger,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>> {
        Box::pin(async move {
            let job = Job {
                argv: self.argv.clone(),
                dir: self.dir.clone(),
                env_set: vec![(
                    "FORGEWATCH_DELIVERY_ID".to_owned(),
                    trigger.delivery_id.clone(),
                )],
                env_remove: self.secret_env_vars.clone(),
                timeout: self.timeout,
                kill_grace: KILL_GRACE,
                stdin: Some(trigger.webhook_json().to_string().into_bytes()),
                max_log_lines: 200,
                max_line_bytes: 2048,
            };
            let on_line =
                |line: &LogLine| tracing::debug!(stream = %line.stream.as_str(), "{}", line.text);
            // A delivery in flight is finished, not cancelled, at shutdown.
            let outcome = process::run(&job, &on_line, &CancellationToken::new())
                .await
                .map_err(|e| DeliveryError::Refused(e.to_string()))?;
            let last_stderr = outcome
                .lines
                .iter()
                .rev()
                .find(|l| l.stream == Stream::Stderr)
                .map(|l| format!(": {}", l.text))
                .unwrap_or_default();
            match outcome.termination {
                Termination::Exited(0) => {
                    let stdout = outcome
                        .lines
                        .iter()
                        .filter(|l| l.stream == Stream::Stdout)
                        .map(|l| l.text.as_str());
                    let result = match result_line(stdout, &trigger.delivery_id) {
                        Some(Ok(reported)) => Some(reported.result),
                        Some(Err(e)) => {
                            tracing::warn!("the command's result line is ignored: {e}");
                            None
                        }
                        None => None,
                    };
                    Ok(Accepted { result })
                }
                Termination::TimedOut => Err(DeliveryError::Timeout),
                Termination::Exited(code) => Err(DeliveryError::Refused(format!(
                    "exited with status {code}{last_stderr}"
                ))),
                Termination::Signaled(sig) => Err(DeliveryError::Refused(format!(
                    "killed by signal {sig}{last_stderr}"
                ))),
                Termination::Cancelled => Err(DeliveryError::Refused("cancelled".to_owned())),
            }
        })
    }
}
