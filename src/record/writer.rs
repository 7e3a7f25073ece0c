//! The recorder: an output of the engine that appends every published snapshot's changes
//! and every event to segment files, on its own thread.
//!
//! A small tokio task forwards snapshots (a `watch`) and events (a `broadcast`) into a
//! bounded channel with `try_send`, so the engine is never held up: when the recorder falls
//! behind, a snapshot is dropped (the next one carries every host that changed since) and
//! the thread does all the encoding, compression and I/O. Blocks are written every
//! [`FLUSH`] (a `kill -9` loses at most that), a key block every [`KEY_EVERY`], and a
//! segment is closed and a new one begun every [`ROTATE_EVERY`] or when it reaches its size
//! cap, after which retention and `max_size` delete whole old segments.
//!
//! Each process writes its own segment files, each held with an exclusive `flock`, so two
//! lookouts recording into one directory never write into one file, and neither deletes a
//! segment the other still writes. A write that fails (disk full, read-only or missing
//! directory) stops recording with a status the header and the log show; it is retried
//! every [`RETRY_EVERY`], and nothing else stops.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, watch};

use super::chunk::{Encoder, encode_events, ms};
use super::format::{self, BlockMeta, Kind};
use super::{RecordSettings, SEGMENT_EXT};
use crate::event::Event;
use crate::snapshot::Snapshot;

/// How often blocks are written: what a `kill -9` can lose.
pub const FLUSH: Duration = Duration::from_secs(2);
/// How often a key block starts a run (a seek decodes at most this much).
pub const KEY_EVERY: Duration = Duration::from_secs(60);
/// How long one segment is written before a new one begins.
pub const ROTATE_EVERY: Duration = Duration::from_secs(3600);
/// How soon a failed recording tries again.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);
/// zstd level of data blocks (docs/record.md: levels 1-9 measured; 9 is what brings a
/// fleet under 1.5 bytes a value, for well under 1% of a core at 1,000 hosts).
pub const ZSTD_LEVEL: i32 = 9;

/// What the recorder is doing, for the header and `lookout check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecState {
    Starting,
    Recording { segment: PathBuf },
    Failed { error: String },
    Stopped,
}

/// Shared view of the recorder's state.
#[derive(Debug, Clone)]
pub struct RecordStatus(Arc<Mutex<RecState>>);

impl Default for RecordStatus {
    fn default() -> Self {
        RecordStatus(Arc::new(Mutex::new(RecState::Starting)))
    }
}

impl RecordStatus {
    pub fn get(&self) -> RecState {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    fn set(&self, s: RecState) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }
    /// The failure to show, if recording stopped on an error.
    pub fn failure(&self) -> Option<String> {
        match self.get() {
            RecState::Failed { error } => Some(error),
            _ => None,
        }
    }
}

/// The status of this process's newest recorder, for the dashboard's header.
static CURRENT: Mutex<Option<RecordStatus>> = Mutex::new(None);

/// Why this process's recording stopped, if it did.
pub fn current_failure() -> Option<String> {
    CURRENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .and_then(RecordStatus::failure)
}

/// Makes `status` the one the dashboard's header shows.
pub fn set_current(status: &RecordStatus) {
    *CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status.clone());
}

enum Input {
    Snapshot(Arc<Snapshot>),
    Event(Box<Event>),
}

/// A running recorder. [`stop`](Self::stop) closes the segment properly (with its index);
/// dropping it without does no harm a crash would not.
pub struct Recorder {
    pub status: RecordStatus,
    stop: Option<SyncSender<Option<Input>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    forward: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts recording what `snapshots` and `events` carry. Call inside a tokio runtime.
    pub fn spawn(
        settings: RecordSettings,
        interval: Duration,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        mut events: broadcast::Receiver<Event>,
    ) -> Recorder {
        let status = RecordStatus::default();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Option<Input>>(256);
        let fwd = tx.clone();
        let forward = tokio::spawn(async move {
            let mut dropped = 0u64;
            loop {
                let input = tokio::select! {
                    c = snapshots.changed() => match c {
                        Ok(()) => Input::Snapshot(snapshots.borrow_and_update().clone()),
                        Err(_) => break,
                    },
                    e = events.recv() => match e {
                        Ok(e) => Input::Event(Box::new(e)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            log::warn!(target: "lookout", "recording missed {n} events");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                match fwd.try_send(Some(input)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            log::warn!(target: "lookout", "recording falls behind: {dropped} updates skipped");
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
            let _ = fwd.try_send(None);
        });
        let st = status.clone();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || Writer::new(settings, interval, st).run(&rx))
            .map_err(|e| log::error!(target: "lookout", "cannot start the recorder: {e}"))
            .ok();
        if thread.is_none() {
            status.set(RecState::Failed {
                error: "cannot start the recorder thread".into(),
            });
        }
        Recorder {
            status,
            stop: Some(tx),
            thread,
            forward,
        }
    }

    /// Writes what is pending, closes the segment with its index and waits (a few seconds
    /// at most) for the thread.
    pub fn stop(mut self) {
        self.forward.abort();
        if let Some(tx) = self.stop.take() {
            // Blocks at most while the thread drains its queue.
            let _ = tx.send(None);
        }
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

struct Segment {
    file: File,
    path: PathBuf,
    offset: u64,
    blocks: Vec<BlockMeta>,
    opened: Instant,
}

struct Writer {
    settings: RecordSettings,
    interval: Duration,
    status: RecordStatus,
    encoder: Encoder,
    events: Vec<(i64, String)>,
    seg: Option<Segment>,
    retry_at: Instant,
    last_key: Instant,
    latest: Option<Arc<Snapshot>>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl Writer {
    fn new(settings: RecordSettings, interval: Duration, status: RecordStatus) -> Self {
        Writer {
            settings,
            interval,
            status,
            encoder: Encoder::new(),
            events: Vec::new(),
            seg: None,
            retry_at: Instant::now(),
            last_key: Instant::now(),
            latest: None,
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
        }
    }

    fn run(mut self, rx: &Receiver<Option<Input>>) {
        self.enforce_limits();
        self.open();
        let mut last_flush = Instant::now();
        loop {
            let wait = self.settings.flush.saturating_sub(last_flush.elapsed());
            match rx.recv_timeout(wait) {
                Ok(Some(Input::Snapshot(s))) => {
                    if self.seg.is_some() {
                        self.encoder.add_snapshot(&s);
                    }
                    self.latest = Some(s);
                }
                Ok(Some(Input::Event(e))) => {
                    if self.seg.is_some()
                        && let Ok(line) = serde_json::to_string(&e)
                    {
                        let t = humantime::parse_rfc3339(&e.at).map_or_else(|_| ms(SystemTime::now()), ms);
                        self.events.push((t, line));
                    }
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_flush.elapsed() >= self.settings.flush {
                last_flush = Instant::now();
                self.flush();
            }
        }
        self.flush();
        self.close();
        self.status.set(RecState::Stopped);
    }

    /// Opens a new segment (after a failure: when the retry time has come).
    fn open(&mut self) {
        if self.seg.is_some() || Instant::now() < self.retry_at {
            return;
        }
        match open_segment(&self.settings.dir, self.interval) {
            Ok(seg) => {
                let was_failed = matches!(self.status.get(), RecState::Failed { .. });
                if was_failed {
                    log::info!(target: "lookout", "recording again into {}", seg.path.display());
                } else {
                    log::info!(target: "lookout", "recording into {}", seg.path.display());
                }
                self.status.set(RecState::Recording {
                    segment: seg.path.clone(),
                });
                self.seg = Some(seg);
                self.start_key();
            }
            Err(e) => self.fail(&format!(
                "cannot record into {}: {e}",
                self.settings.dir.display()
            )),
        }
    }

    fn start_key(&mut self) {
        self.encoder.start_key();
        self.last_key = Instant::now();
        if let Some(s) = &self.latest {
            self.encoder.add_snapshot(s);
        }
    }

    fn fail(&mut self, error: &str) {
        if let Some(seg) = self.seg.take() {
            // Leave no half-written block behind.
            let _ = seg.file.set_len(seg.offset);
        }
        let first = !matches!(self.status.get(), RecState::Failed { .. });
        if first {
            log::error!(target: "lookout", "recording stopped: {error} (retrying every {}s)", RETRY_EVERY.as_secs());
        }
        self.status.set(RecState::Failed {
            error: error.to_string(),
        });
        self.retry_at = Instant::now() + RETRY_EVERY;
        self.encoder = Encoder::new();
        self.events.clear();
    }

    fn write_block(&mut self, kind: Kind, flags: u8, t0: i64, t1: i64, raw: &[u8]) -> Result<(), String> {
        let payload = match (kind, self.zstd.as_mut()) {
            (Kind::Index, _) => raw.to_vec(),
            (_, Some(z)) => z.compress(raw).map_err(|e| format!("compression failed: {e}"))?,
            (_, None) => return Err("no zstd compressor".into()),
        };
        let Some(seg) = self.seg.as_mut() else {
            return Ok(());
        };
        let bytes = format::block(kind, flags, t0, t1, &payload);
        seg.file
            .write_all(&bytes)
            .map_err(|e| format!("writing {}: {e}", seg.path.display()))?;
        seg.blocks.push(BlockMeta {
            offset: seg.offset,
            kind,
            flags,
            t_first: t0,
            t_last: t1,
            len: payload.len() as u32,
        });
        seg.offset += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) {
        self.open();
        if self.seg.is_none() {
            return;
        }
        let mut result = Ok(());
        if let Some((flags, t0, t1, raw)) = self.encoder.take_block() {
            result = self.write_block(Kind::Data, flags, t0, t1, &raw);
        }
        if result.is_ok() && !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            let t0 = events.iter().map(|e| e.0).min().unwrap_or(0);
            let t1 = events.iter().map(|e| e.0).max().unwrap_or(0);
            result = self.write_block(Kind::Events, 0, t0, t1, &encode_events(&events));
        }
        if let Err(e) = result {
            self.fail(&e);
            return;
        }
        let rotate = self
            .seg
            .as_ref()
            .is_some_and(|s| s.opened.elapsed() >= ROTATE_EVERY || s.offset >= self.settings.segment_cap());
        if rotate {
            self.close();
            self.enforce_limits();
            self.open();
        } else if self.last_key.elapsed() >= self.settings.key_every {
            if let Some(seg) = &self.seg
                && let Err(e) = seg.file.sync_data()
            {
                let e = format!("syncing {}: {e}", seg.path.display());
                self.fail(&e);
                return;
            }
            self.start_key();
        }
    }

    /// Writes the index block and trailer and releases the segment.
    fn close(&mut self) {
        let Some(seg) = self.seg.as_ref() else {
            return;
        };
        let at = seg.offset;
        let index = format::index_payload(&seg.blocks);
        let t0 = seg.blocks.iter().map(|b| b.t_first).min().unwrap_or(0);
        let t1 = seg.blocks.iter().map(|b| b.t_last).max().unwrap_or(0);
        let result = self.write_block(Kind::Index, 0, t0, t1, &index).and_then(|()| {
            let seg = self.seg.as_mut().ok_or("no segment")?;
            seg.file
                .write_all(&format::trailer(at))
                .and_then(|()| seg.file.sync_data())
                .map_err(|e| format!("closing {}: {e}", seg.path.display()))
        });
        match result {
            Ok(()) => self.seg = None,
            Err(e) => self.fail(&e),
        }
    }

    /// Deletes closed segments older than the retention, then the oldest ones while the
    /// directory holds more than `max_size`.
    fn enforce_limits(&mut self) {
        let own = self.seg.as_ref().map(|s| s.path.clone());
        enforce_limits(&self.settings, own.as_deref(), SystemTime::now());
    }
}

/// A new segment file named by its start time and this process, locked for writing.
fn open_segment(dir: &Path, interval: Duration) -> std::io::Result<Segment> {
    std::fs::create_dir_all(dir)?;
    let start = ms(SystemTime::now());
    let pid = std::process::id();
    let path = dir.join(format!(
        "{}-{start}-{pid}.{SEGMENT_EXT}",
        super::file_stamp(start)
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    let header = format::segment_header(start, pid, interval.as_millis().min(u128::from(u32::MAX)) as u32);
    if let Err(e) = file.write_all(&header) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Segment {
        file,
        path,
        offset: format::HEADER_LEN,
        blocks: Vec::new(),
        opened: Instant::now(),
    })
}

/// Whether another process (or another segment of this one) holds the file.
pub(crate) fn in_use(path: &Path) -> bool {
    match File::open(path) {
        Ok(f) => rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err(),
        Err(_) => false,
    }
}

/// Retention and size limits over a recording directory; segments being written (locked)
/// are never deleted.
pub fn enforce_limits(settings: &RecordSettings, own: Option<&Path>, now: SystemTime) {
    let Ok(list) = super::reader::list_segments(&settings.dir) else {
        return;
    };
    let mut kept = Vec::new();
    for (path, meta) in list {
        let modified = meta.modified().unwrap_or(now);
        let old = now.duration_since(modified).unwrap_or_default() > settings.retention;
        let live = Some(path.as_path()) == own || in_use(&path);
        if old && !live {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    log::info!(target: "lookout", "recording: deleted {} (older than the retention)", path.display())
                }
                Err(e) => log::warn!(target: "lookout", "recording: cannot delete {}: {e}", path.display()),
            }
            continue;
        }
        kept.push((path, meta.len(), live));
    }
    let mut total: u64 = kept.iter().map(|k| k.1).sum();
    // Oldest first: names start with the start time.
    for (path, len, live) in kept {
        if total <= settings.max_size {
            break;
        }
        if live {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                log::info!(target: "lookout", "recording: deleted {} (over max_size)", path.display());
            }
            Err(e) => log::warn!(target: "lookout", "recording: cannot delete {}: {e}", path.display()),
        }
    }
}
