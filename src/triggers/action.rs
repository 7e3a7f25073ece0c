//! Running notification commands.
//!
//! An action is an argv list run directly (never through a shell by lookout), with
//! `{placeholder}`s expanded in its arguments, the same values as `LOOKOUT_*` environment
//! variables and the trigger event as one JSON line on its stdin. Each runs in its own
//! process group under a timeout (then the whole group is killed), at most
//! `[general] max_actions` at once; its exit status and bounded output become an `action`
//! event. Nothing an action does — a missing program, a non-zero exit, a hang, a flood of
//! output — can block the engine, the UI or other actions: each runs in its own task.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, broadcast, watch};

use super::rule::PLACEHOLDERS;
use super::state::{TriggerEvent, TriggerState, format_value};
use crate::clock::Clock;
use crate::event::{Event, EventKind};

/// Most bytes of stdout (and of stderr) kept from one action.
pub const OUTPUT_LIMIT: usize = 4096;

/// How long output is still collected after the action exited (a background child that
/// keeps the pipe open must not hold the report back).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    /// Exited with status 0.
    Ok,
    /// Exited with another status, or was killed by a signal it did not get from us.
    Failed,
    /// Ran past the timeout; its process group was killed.
    TimedOut,
    /// Could not be started (missing program, permissions) or lookout was stopping.
    NotStarted,
}

/// The outcome of one action, for the event log.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ActionEvent {
    pub trigger: String,
    pub host: String,
    pub instance: String,
    /// The trigger state the action announced (`firing` or `resolved`).
    pub state: TriggerState,
    /// The command as run, placeholders expanded.
    pub argv: Vec<String>,
    pub result: ActionResult,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    /// At most [`OUTPUT_LIMIT`] bytes, control characters other than newline and tab removed.
    pub stdout: String,
    pub stderr: String,
    /// Whether output was cut at the limit.
    pub truncated: bool,
    pub error: Option<String>,
}

impl ActionEvent {
    pub fn summary(&self) -> String {
        let program = self.argv.first().map_or("", String::as_str);
        let what = match self.result {
            ActionResult::Ok => "ok".to_string(),
            ActionResult::Failed => match (self.exit_code, self.signal) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "failed".to_string(),
            },
            ActionResult::TimedOut => format!("timed out after {} ms, killed", self.duration_ms),
            ActionResult::NotStarted => {
                format!("not started: {}", self.error.as_deref().unwrap_or(""))
            }
        };
        let mut s = format!("action {program} for {}: {what}", self.trigger);
        let err = self.stderr.lines().next().unwrap_or("").trim();
        if !err.is_empty() && self.result != ActionResult::Ok {
            s.push_str(&format!(" — {}", crate::model::sanitize(err)));
        }
        s
    }
}

/// The values an action sees, by placeholder name (also `LOOKOUT_<NAME>`).
pub fn values(t: &TriggerEvent) -> Vec<(&'static str, String)> {
    let clean = |s: &str| crate::model::sanitize(s);
    PLACEHOLDERS
        .iter()
        .map(|&name| {
            let v = match name {
                "trigger" => clean(&t.trigger),
                "host" => clean(&t.host),
                "instance" => clean(&t.instance),
                "metric" => t.metric.name().to_string(),
                "value" => t.value.map(format_value).unwrap_or_default(),
                "threshold" => format_value(t.threshold),
                "severity" => t.severity.as_str().to_string(),
                "state" => t.state.as_str().to_string(),
                "since" => crate::model::rfc3339(t.since),
                "message" => t.message.as_deref().map(clean).unwrap_or_default(),
                _ => String::new(),
            };
            (name, v)
        })
        .collect()
}

/// Expands `{name}` placeholders in one argument, in a single pass: a value that itself
/// contains `{host}` is not expanded again. Unknown `{words}` are left as written.
pub fn expand(arg: &str, values: &[(&'static str, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').and_then(|close| {
            let name = &after[..close];
            values.iter().find(|(n, _)| *n == name).map(|(_, v)| (v, close))
        }) {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads a stream to its end, keeping at most `limit` bytes (the rest is drained so the
/// child never blocks on a full pipe).
async fn read_bounded(mut r: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (kept, truncated)
}

/// Output as text for the log: lossy UTF-8, no control characters but newline and tab.
fn clean_output(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Kills every process of the group the action leads.
fn kill_group(pid: Option<u32>) {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // ESRCH (the group is already gone) is fine.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// What running one command produced (before it is tied to a trigger).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: ActionResult,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub error: Option<String>,
}

/// Runs one already-expanded argv with `env` added, `stdin` fed to it, under `timeout`.
pub async fn run_command(
    argv: &[String],
    env: &[(String, String)],
    stdin: Vec<u8>,
    timeout: Duration,
    limit: usize,
) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        result: ActionResult::NotStarted,
        exit_code: None,
        signal: None,
        duration: Duration::ZERO,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
        error: None,
    };
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        outcome.error = Some("empty command".to_string());
        return outcome;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can kill everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            outcome.error = Some(format!("cannot run `{program}`: {e}"));
            return outcome;
        }
    };
    let pid = child.id();
    if let Some(mut input) = child.stdin.take() {
        tokio::spawn(async move {
            // An action that does not read its stdin is fine.
            let _ = input.write_all(&stdin).await;
        });
    }
    let out = child.stdout.take().map(|s| tokio::spawn(read_bounded(s, limit)));
    let err = child.stderr.take().map(|s| tokio::spawn(read_bounded(s, limit)));
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            outcome.exit_code = status.code();
            outcome.signal = status.signal();
            outcome.result = if status.success() {
                ActionResult::Ok
            } else {
                ActionResult::Failed
            };
        }
        Ok(Err(e)) => {
            outcome.result = ActionResult::Failed;
            outcome.error = Some(format!("waiting for `{program}`: {e}"));
        }
        Err(_) => {
            kill_group(pid);
            let _ = child.wait().await;
            outcome.result = ActionResult::TimedOut;
            outcome.error = Some(format!(
                "still running after {}; its process group was killed",
                humantime::format_duration(timeout)
            ));
        }
    }
    outcome.duration = started.elapsed();
    for (handle, text) in [(out, &mut outcome.stdout), (err, &mut outcome.stderr)] {
        let Some(mut handle) = handle else { continue };
        match tokio::time::timeout(OUTPUT_GRACE, &mut handle).await {
            Ok(Ok((bytes, truncated))) => {
                *text = clean_output(&bytes);
                outcome.truncated |= truncated;
            }
            _ => handle.abort(),
        }
    }
    outcome
}

/// Settings of the [`ActionRunner`] (from `[general]`).
#[derive(Debug, Clone, Copy)]
pub struct ActionSettings {
    pub timeout: Duration,
    pub max_running: usize,
}

/// Runs the actions trigger events ask for, in the background, and reports each outcome
/// as an `action` event on the same broadcast channel.
#[derive(Clone)]
pub struct ActionRunner {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ActionSettings,
    permits: Arc<Semaphore>,
    events: broadcast::Sender<Event>,
    clock: Arc<dyn Clock>,
    /// Actions dispatched and not yet reported.
    in_flight: watch::Sender<usize>,
}

/// Counts one action in flight for as long as it lives.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl ActionRunner {
    pub fn new(settings: ActionSettings, events: broadcast::Sender<Event>, clock: Arc<dyn Clock>) -> Self {
        ActionRunner {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(settings.max_running.max(1))),
                settings,
                events,
                clock,
                in_flight: watch::Sender::new(0),
            }),
        }
    }

    /// Starts the action an event asks for, if any (a trigger event that notifies and whose
    /// rule has a command). Returns at once.
    pub fn dispatch(&self, event: &Event) -> bool {
        let EventKind::Trigger(t) = &event.kind else {
            return false;
        };
        let (true, Some(run)) = (t.notify, &t.run) else {
            return false;
        };
        let values = values(t);
        let argv: Vec<String> = run.iter().map(|a| expand(a, &values)).collect();
        let env: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| (format!("LOOKOUT_{}", k.to_ascii_uppercase()), v.clone()))
            .collect();
        let mut stdin = serde_json::to_vec(event).unwrap_or_default();
        stdin.push(b'\n');
        let base = ActionEvent {
            trigger: t.trigger.clone(),
            host: t.host.clone(),
            instance: t.instance.clone(),
            state: t.state,
            argv,
            result: ActionResult::NotStarted,
            exit_code: None,
            signal: None,
            duration_ms: 0,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            error: None,
        };
        self.inner.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight(self.inner.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut report = base;
            match inner.permits.clone().acquire_owned().await {
                Ok(_permit) => {
                    let o =
                        run_command(&report.argv, &env, stdin, inner.settings.timeout, OUTPUT_LIMIT).await;
                    report.result = o.result;
                    report.exit_code = o.exit_code;
                    report.signal = o.signal;
                    report.duration_ms = u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX);
                    report.stdout = o.stdout;
                    report.stderr = o.stderr;
                    report.truncated = o.truncated;
                    report.error = o.error;
                }
                Err(_) => report.error = Some("lookout is stopping".to_string()),
            }
            if report.result != ActionResult::Ok {
                log::warn!("{}", report.summary());
            }
            let _ = inner
                .events
                .send(Event::new(inner.clock.now(), EventKind::Action(report)));
            drop(guard);
        });
        true
    }

    /// Consumes events until the channel closes, dispatching the actions they ask for.
    pub async fn serve(self, mut events: broadcast::Receiver<Event>) {
        loop {
            match events.recv().await {
                Ok(e) => {
                    self.dispatch(&e);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::warn!("the action runner missed {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    /// How many actions are queued or running.
    pub fn in_flight(&self) -> usize {
        *self.inner.in_flight.borrow()
    }

    /// Waits until no action is queued or running.
    pub async fn idle(&self) {
        let mut rx = self.inner.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Stops starting actions from now on: queued and later ones are reported as not
    /// started (e.g. for a one-shot `lookout snapshot`, which should notify nobody).
    pub fn close(&self) {
        self.inner.permits.close();
    }

    /// Stops starting actions (queued ones are reported as not started) and waits for the
    /// running ones, each bounded by its timeout.
    pub async fn shutdown(&self) {
        self.close();
        self.idle().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_is_one_pass_and_keeps_unknown_words() {
        let values = vec![
            ("host", "{instance}".to_string()),
            ("instance", "/var".to_string()),
        ];
        assert_eq!(expand("{host}:{instance}", &values), "{instance}:/var");
        assert_eq!(expand("{hots} {\"a\": 1} {", &values), "{hots} {\"a\": 1} {");
        assert_eq!(expand("x{instance}y{instance}", &values), "x/vary/var");
    }

    #[test]
    fn output_keeps_lines_and_drops_escapes() {
        assert_eq!(clean_output(b"a\x1b[31m\tb\n\x07"), "a [31m\tb\n ");
    }
}
