//! `lookout serve`: the engine with no screen, its state served on a Unix socket.
//!
//! One [`Hub`] task turns each published snapshot into a delta and each event into a
//! frame, encoded once and broadcast to every viewer. A viewer's task only writes the
//! frames it is given, so a slow viewer never slows the engine or the others: when it
//! falls behind the broadcast it skips ahead to a full state, and when its socket does not
//! take a frame within [`STALL`] it is dropped. Commands from a viewer go to the engine
//! with the viewer's login name (from the socket's peer credentials) attached.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc};

use super::delta;
use super::protocol::{self, ClientMsg, Hello, ServerMsg, Want, WireCommand, WireError};
use super::socket::{self, Group};
use crate::config::Config;
use crate::event::Event;
use crate::runtime::Running;
use crate::snapshot::Snapshot;

/// How long a viewer's socket may refuse a frame before the viewer is dropped.
pub const STALL: Duration = Duration::from_secs(5);
/// Frames a viewer may be behind before it skips ahead to a full state.
const BACKLOG: usize = 64;
/// Commands a viewer may send in a burst, and per second after it.
const COMMAND_BURST: f64 = 20.0;
const COMMANDS_PER_SEC: f64 = 10.0;
/// How long a connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How `lookout serve` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub socket: Option<PathBuf>,
    pub group: Option<String>,
}

/// One encoded frame and what it carries.
#[derive(Clone)]
struct Frame {
    state: bool,
    bytes: Arc<[u8]>,
    /// The snapshot a delta brings the viewer to (whose detail host's processes it may
    /// then be sent).
    snap: Option<Arc<Snapshot>>,
}

/// The current snapshot and the broadcast of frames, changed together under one lock so
/// that a viewer that takes both gets every delta after its full state, and no other.
struct Hub {
    inner: Mutex<(Arc<Snapshot>, broadcast::Sender<Frame>)>,
}

impl Hub {
    fn subscribe(&self) -> (Arc<Snapshot>, broadcast::Receiver<Frame>) {
        match self.inner.lock() {
            Ok(g) => (g.0.clone(), g.1.subscribe()),
            Err(p) => {
                let g = p.into_inner();
                (g.0.clone(), g.1.subscribe())
            }
        }
    }

    fn publish(&self, snap: Option<Arc<Snapshot>>, frame: Frame) {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(s) = snap {
            g.0 = s;
        }
        let _ = g.1.send(frame);
    }
}

/// What every connection task shares.
struct Ctx {
    hub: Hub,
    commands: mpsc::Sender<crate::triggers::Command>,
    reconnect: broadcast::Sender<crate::model::HostName>,
    /// Where a Reload request goes (src/reload.rs); `None` in tests without an engine.
    reloader: Option<Arc<tokio::sync::Mutex<crate::reload::Reloader>>>,
    owner: u32,
    group: Option<Group>,
}

fn encode(msg: &ServerMsg<'_>) -> Option<Arc<[u8]>> {
    match protocol::encode_server(msg) {
        Ok(b) => Some(b.into()),
        Err(e) => {
            log::error!("cannot encode a message for viewers: {e}");
            None
        }
    }
}

/// Turns snapshots and events into frames for every viewer, until the engine stops.
async fn run_hub(ctx: Arc<Ctx>, running: &Running) {
    let mut snapshots = running.snapshots.clone();
    let mut events = running.subscribe();
    let mut prev = snapshots.borrow_and_update().clone();
    let mut known_metrics = crate::model::Metric::count();
    let mut prev_triggers = postcard::to_allocvec(&prev.triggers).unwrap_or_default();
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = snapshots.borrow_and_update().clone();
                // Metrics registered since the last state go out before the state using them.
                let count = crate::model::Metric::count();
                if count > known_metrics {
                    if let Some(bytes) = encode(&ServerMsg::Metrics(protocol::metrics_from(known_metrics))) {
                        ctx.hub.publish(None, Frame { state: true, bytes, snap: None });
                    }
                    known_metrics = count;
                }
                let triggers = postcard::to_allocvec(&next.triggers).unwrap_or_default();
                let msg = delta::delta(&prev, &next, triggers != prev_triggers);
                if let Some(bytes) = encode(&msg) {
                    ctx.hub.publish(Some(next.clone()), Frame { state: true, bytes, snap: Some(next.clone()) });
                }
                prev = next;
                prev_triggers = triggers;
            }
            e = events.recv() => match e {
                Ok(e) => {
                    let json = serde_json::to_string(&e).unwrap_or_default();
                    if let Some(bytes) = encode(&ServerMsg::Event(json.into())) {
                        ctx.hub.publish(None, Frame { state: false, bytes, snap: None });
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => log::warn!("viewers missed {n} events"),
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// `lookout serve`: runs until SIGINT or SIGTERM, then removes its socket.
pub async fn serve(config: Arc<Config>, opts: ServeOptions) -> anyhow::Result<()> {
    let group = opts.group.as_deref().map(Group::lookup).transpose()?;
    let path = opts.socket.clone().unwrap_or_else(socket::default_path);
    let listener = socket::bind(&path, group.as_ref())?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    log::info!(
        "serving {} hosts with {} triggers on {}{}",
        config.hosts.len(),
        config.triggers.len(),
        path.display(),
        group
            .as_ref()
            .map(|g| format!(" (group {})", g.name))
            .unwrap_or_default()
    );
    let mut running = crate::runtime::start(config);
    // The server's own log: every event, one line each, on stderr.
    let mut log_events = running.subscribe_from_start();
    tokio::spawn(async move {
        loop {
            match log_events.recv().await {
                Ok(e) => log_event(&e),
                Err(broadcast::error::RecvError::Lagged(n)) => log::warn!("the log missed {n} events"),
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let first = running.snapshots.borrow().clone();
    let ctx = Arc::new(Ctx {
        hub: Hub {
            inner: Mutex::new((first, broadcast::channel(BACKLOG).0)),
        },
        commands: running.commands.clone(),
        reconnect: running.reconnect.clone(),
        reloader: Some(running.reloader()),
        owner: rustix::process::getuid().as_raw(),
        group,
    });
    let hub = run_hub(ctx.clone(), &running);
    tokio::pin!(hub);
    let reason = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            () = &mut hub => break "the engine stopped",
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, ctx.clone()));
                }
                Err(e) => {
                    log::warn!("accepting a viewer: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    };
    log::info!("stopping ({reason})");
    drop(listener);
    if let Err(e) = std::fs::remove_file(&path) {
        log::warn!("cannot remove {}: {e}", path.display());
    }
    // Viewers see their connection close and reconnect to the next server.
    if let Some(bytes) = encode(&ServerMsg::Notice(format!("the server is stopping ({reason})"))) {
        ctx.hub.publish(
            None,
            Frame {
                state: false,
                bytes,
                snap: None,
            },
        );
    }
    let drained = running.actions.shutdown();
    tokio::select! {
        () = drained => {}
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    running.engine.abort();
    Ok(())
}

/// The frames that bring a new viewer to `snap`: the run-time metrics, then the state
/// (a dashboard's without process lists, `snapshot --socket`'s whole).
fn full_state(snap: &Snapshot, want: Want) -> Vec<Arc<[u8]>> {
    let metrics = protocol::metrics_from(0);
    let mut frames = Vec::new();
    if !metrics.is_empty() {
        frames.extend(encode(&ServerMsg::Metrics(metrics)));
    }
    frames.extend(encode(&match want {
        Want::View => delta::full_view(snap),
        _ => delta::full(snap),
    }));
    frames
}

fn log_event(e: &Event) {
    log::info!(target: "lookout::event", "{}", e.summary());
}

/// Whether the peer may attach: the owner and root always; with `--group`, its members.
/// The socket's mode already keeps others out; this is the second lock.
fn allowed(ctx: &Ctx, uid: u32, gid: u32, user: &str) -> bool {
    uid == ctx.owner
        || uid == 0
        || ctx
            .group
            .as_ref()
            .is_some_and(|g| g.gid == gid || g.members.iter().any(|m| m == user))
}

/// One connection: who it is, the handshake, then what it asked for.
async fn connection(stream: UnixStream, ctx: Arc<Ctx>) {
    let (uid, gid) = match stream.peer_cred() {
        Ok(c) => (c.uid(), c.gid()),
        Err(e) => {
            log::warn!("a viewer without peer credentials: {e}");
            return;
        }
    };
    let user = socket::user_name(uid);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut answer = Hello::new();
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, protocol::read_hello(&mut read)).await {
        Ok(Ok(h)) => h,
        Ok(Err(WireError::Closed)) => return,
        Ok(Err(e)) => {
            log::warn!("{user}: {e}; closing");
            answer.error = Some(format!(
                "{e}: this is a lookout server (protocol {})",
                protocol::VERSION
            ));
            let _ = protocol::write_hello(&mut write, &answer).await;
            return;
        }
        Err(_) => {
            log::warn!(
                "{user}: no handshake within {}s; closing",
                HELLO_TIMEOUT.as_secs()
            );
            return;
        }
    };
    if hello.lookout_protocol != protocol::VERSION {
        let theirs = hello.program.as_deref().unwrap_or("another lookout");
        answer.error = Some(format!(
            "this server speaks lookout protocol {} ({}), the viewer ({theirs}) protocol {}: use the same lookout version on both sides",
            protocol::VERSION,
            protocol::program(),
            hello.lookout_protocol
        ));
        log::warn!("{user}: refused: protocol {}", hello.lookout_protocol);
        let _ = protocol::write_hello(&mut write, &answer).await;
        return;
    }
    if !allowed(&ctx, uid, gid, &user) {
        log::warn!("{user} (uid {uid}) may not attach: refused");
        answer.error = Some(format!("user {user} may not attach to this server"));
        let _ = protocol::write_hello(&mut write, &answer).await;
        return;
    }
    let Some(want) = hello.want else {
        answer.error = Some("the handshake says not what the connection is for".into());
        let _ = protocol::write_hello(&mut write, &answer).await;
        return;
    };
    answer.user = Some(user.clone());
    if protocol::write_hello(&mut write, &answer).await.is_err() {
        return;
    }
    match want {
        Want::Snapshot => {
            let (snap, _) = ctx.hub.subscribe();
            for bytes in full_state(&snap, Want::Snapshot) {
                if !matches!(
                    tokio::time::timeout(STALL, write.write_all(&bytes)).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
        }
        Want::View | Want::Events | Want::Control => {
            log::info!("{user} attached ({want:?})");
            let why = session(&ctx, want, &user, read, write).await;
            log::info!("{user} detached: {why}");
        }
    }
}

/// The detail view a viewer has open: its request, and the processes it was last sent.
struct Detail {
    id: u32,
    host: String,
    sent: Option<Arc<Vec<crate::model::ProcessDetail>>>,
}

impl Detail {
    /// The frame that brings the viewer's processes of its host to `snap`'s, if they changed.
    fn frame(&mut self, snap: &Snapshot) -> Option<Arc<[u8]>> {
        let h = snap.host(&self.host)?;
        if self.sent.as_ref().is_some_and(|s| Arc::ptr_eq(s, &h.processes)) {
            return None;
        }
        let msg = delta::processes(self.id, h, self.sent.as_ref());
        self.sent = Some(h.processes.clone());
        encode(&msg?)
    }
}

/// A viewer's session: a reader task for its messages, this task for its frames.
async fn session<R, W>(ctx: &Arc<Ctx>, want: Want, user: &str, read: BufReader<R>, mut write: W) -> String
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (replies_tx, mut replies) = mpsc::channel::<Arc<[u8]>>(16);
    let (detail_tx, mut detail_rx) = tokio::sync::watch::channel(None);
    let reader = tokio::spawn(read_commands(
        ctx.clone(),
        user.to_string(),
        read,
        replies_tx,
        detail_tx,
    ));
    let (snap, mut frames) = ctx.hub.subscribe();
    let mut pending: Vec<Arc<[u8]>> = match want {
        Want::View => full_state(&snap, want),
        _ => Vec::new(),
    };
    // The state the viewer has been sent last, and its detail view.
    let mut last = snap;
    let mut detail: Option<Detail> = None;
    let mut detail_open = want == Want::View;
    let why = 'session: loop {
        for bytes in pending.drain(..) {
            match tokio::time::timeout(STALL, write.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break 'session format!("{e}"),
                Err(_) => break 'session format!("stalled: took no data for {}s, dropped", STALL.as_secs()),
            }
        }
        tokio::select! {
            biased;
            r = replies.recv() => match r {
                Some(bytes) => pending.push(bytes),
                None => break "closed the connection".to_string(),
            },
            d = detail_rx.changed(), if detail_open => {
                if d.is_err() {
                    detail_open = false;
                    continue;
                }
                let asked = detail_rx.borrow_and_update().clone();
                detail = asked.and_then(|(id, host): (u32, Option<String>)| {
                    Some(Detail { id, host: host?, sent: None })
                });
                if let Some(d) = &mut detail {
                    pending.extend(d.frame(&last));
                }
            }
            f = frames.recv(), if want != Want::Control => match f {
                Ok(f) if f.state && want != Want::View => {}
                Ok(f) => {
                    pending.push(f.bytes);
                    if let Some(s) = f.snap {
                        if let Some(d) = &mut detail {
                            pending.extend(d.frame(&s));
                        }
                        last = s;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Skip ahead: a full state of now replaces the deltas it missed.
                    let (snap, rx) = ctx.hub.subscribe();
                    frames = rx;
                    if want == Want::View {
                        log::info!("{user} fell {n} frames behind: sending a full state");
                        pending = full_state(&snap, want);
                        if let Some(d) = &mut detail {
                            // The full state has no processes: whole again.
                            d.sent = None;
                            pending.extend(d.frame(&snap));
                        }
                        last = snap;
                    } else {
                        let note = format!("this reader fell behind: events skipped ({n} frames)");
                        pending.extend(encode(&ServerMsg::Notice(note)));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break "the server stopped".to_string(),
            },
        }
    };
    reader.abort();
    why
}

/// Reads a viewer's messages until it closes or sends something that is not a message;
/// commands beyond the rate limit are dropped (and said so), never queued.
async fn read_commands<R: AsyncRead + Unpin>(
    ctx: Arc<Ctx>,
    user: String,
    mut read: BufReader<R>,
    replies: mpsc::Sender<Arc<[u8]>>,
    detail: tokio::sync::watch::Sender<Option<(u32, Option<String>)>>,
) {
    let mut buf = Vec::new();
    let mut tokens = COMMAND_BURST;
    let mut last = Instant::now();
    let mut dropped = 0u64;
    let mut last_note: Option<Instant> = None;
    let reply = |ok: bool, text: String| {
        if let Some(bytes) = encode(&ServerMsg::Reply { ok, text }) {
            // A viewer that does not read its replies does not get more of them.
            let _ = replies.try_send(bytes);
        }
    };
    loop {
        let msg: ClientMsg =
            match protocol::read_frame(&mut read, protocol::CLIENT_FRAME_LIMIT, &mut buf).await {
                Ok(m) => m,
                Err(WireError::Closed) => return,
                Err(e) => {
                    log::warn!("{user}: {e}; closing the connection");
                    reply(false, format!("{e}; closing the connection"));
                    return;
                }
            };
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * COMMANDS_PER_SEC).min(COMMAND_BURST);
        last = now;
        if tokens < 1.0 {
            dropped += 1;
            if last_note.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                log::warn!("{user}: too many commands: {dropped} dropped");
                reply(false, format!("too many commands: {dropped} dropped"));
                last_note = Some(now);
            }
            continue;
        }
        tokens -= 1.0;
        match msg {
            ClientMsg::Reload => match &ctx.reloader {
                None => reply(
                    false,
                    format!("this server ({}) does not support reload", protocol::program()),
                ),
                Some(r) => {
                    log::info!("{user} asked for a config reload");
                    let outcome = r.lock().await.reload().await;
                    match outcome {
                        crate::reload::ReloadOutcome::Applied(d) if d.is_empty() => {
                            reply(true, "config reloaded: nothing changed".into());
                        }
                        crate::reload::ReloadOutcome::Applied(d) => {
                            reply(true, format!("config reloaded: {}", d.join("; ")));
                        }
                        crate::reload::ReloadOutcome::Refused(e) => reply(
                            false,
                            format!(
                                "config reload refused, the running config stays:\n{}",
                                e.join("\n")
                            ),
                        ),
                    }
                }
            },
            ClientMsg::Detail { id, host } => {
                let _ = detail.send(Some((id, host)));
            }
            ClientMsg::Command(WireCommand::Reconnect { host }) => {
                log::info!("{user} asked to reconnect {host}");
                let _ = ctx.reconnect.send(host.into());
            }
            ClientMsg::Command(c) => {
                log::info!("{user}: {c:?}");
                if ctx.commands.try_send(c.into_command(&user)).is_err() {
                    reply(false, "the engine is busy: command dropped, try again".into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn ctx() -> Arc<Ctx> {
        Arc::new(Ctx {
            hub: Hub {
                inner: Mutex::new((
                    Arc::new(Snapshot::empty(Duration::from_secs(1))),
                    broadcast::channel(BACKLOG).0,
                )),
            },
            commands: mpsc::channel(4).0,
            reconnect: broadcast::channel(4).0,
            reloader: None,
            owner: 0,
            group: None,
        })
    }

    /// Virtual time: the stall timeout passes as soon as every task waits.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_viewer_is_dropped_and_the_others_keep_up() {
        let ctx = ctx();
        // A viewer whose side of the socket holds 4 KiB and is never read.
        let (_stalled_peer, stalled) = tokio::io::duplex(4096);
        let (r, w) = tokio::io::split(stalled);
        let c = ctx.clone();
        let stalled =
            tokio::spawn(async move { session(&c, Want::View, "slow", BufReader::new(r), w).await });
        let (mut good_peer, good) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(good);
        let c = ctx.clone();
        let good = tokio::spawn(async move { session(&c, Want::View, "quick", BufReader::new(r), w).await });
        let reader = tokio::spawn(async move {
            let mut total = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            while total < 1000 * 1024 {
                match good_peer.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        tokio::task::yield_now().await;
        let frame: Arc<[u8]> = vec![7u8; 1024].into();
        let start = tokio::time::Instant::now();
        for _ in 0..1000 {
            ctx.hub.publish(
                None,
                Frame {
                    state: true,
                    bytes: frame.clone(),
                    snap: None,
                },
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Publishing never waited on the stalled viewer.
        assert!(start.elapsed() < Duration::from_secs(11), "{:?}", start.elapsed());
        let why = tokio::time::timeout(STALL * 2, stalled)
            .await
            .expect("dropped")
            .expect("task");
        assert!(why.contains("stalled"), "{why}");
        // The quick viewer got every frame.
        let got = tokio::time::timeout(Duration::from_secs(1), reader)
            .await
            .expect("read")
            .expect("task");
        assert!(got >= 1000 * 1024, "{got}");
        // It leaves when its peer does, not for stalling.
        let why = good.await.expect("task");
        assert_eq!(why, "closed the connection");
    }
}
