//! The wire protocol of `lookout serve`: a versioned handshake, then length-prefixed frames.
//!
//! The handshake is one JSON line each way (at most [`HELLO_LIMIT`] bytes), so that a
//! viewer of another version, or something that is not lookout at all, gets a readable
//! answer instead of garbage. After it, every message is a frame: a 4-byte big-endian length
//! and that many bytes of postcard. postcard because a steady-state delta of a large fleet is
//! mostly numbers and short names: its varints and raw f64s are about a third of the bytes of
//! the same message in JSON, and encoding is several times cheaper; the format is serde, so
//! the snapshot types are reused as they are. Both sides cap the length of a frame they
//! read before allocating it.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Via;
use crate::model::{HostName, HostStatus, Metric, ProcessDetail, Reading};
use crate::snapshot::MaxRiskLine;
use crate::triggers::TriggerView;

/// Bumped on every change of the frames below; both sides refuse another number.
/// 2: hosts carry their check reports; values and process figures of deltas travel as
/// steps; large frames are zstd-compressed.
/// 3: a viewer's state has no process lists (the overview shows the `proc.*` totals, which
/// are readings): each viewer gets those of the host whose detail it has open
/// ([`ClientMsg::Detail`], [`ServerMsg::Processes`]); bytes, rates, counts and times
/// travel at 12 significant bits ([`wire_code`]); deltas address hosts by position and send
/// a host's header as what changed; max-risk lines travel one by one.
pub const VERSION: u32 = 3;
/// Longest handshake line.
pub const HELLO_LIMIT: usize = 4096;
/// Longest frame a viewer may send (commands are small).
pub const CLIENT_FRAME_LIMIT: usize = 64 * 1024;
/// Longest frame a server may send (the full state of a very large fleet).
pub const SERVER_FRAME_LIMIT: usize = 64 * 1024 * 1024;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// The dashboard: full state, then deltas and events; sends commands.
    View,
    /// One full state, then the server closes (`snapshot --socket`).
    Snapshot,
    /// Events only (`run --headless --socket`).
    Events,
    /// Requests only (`reload`).
    Control,
}

/// The handshake line, both ways. Fields a side does not use stay `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the sender speaks (always present).
    pub lookout_protocol: u32,
    /// The sender's program and version, e.g. `lookout 0.1.0`.
    #[serde(default)]
    pub program: Option<String>,
    /// Client: what the connection is for.
    #[serde(default)]
    pub want: Option<Want>,
    /// Server: the name it knows the viewer by (from the socket's peer credentials).
    #[serde(default)]
    pub user: Option<String>,
    /// Server: why it refuses the connection.
    #[serde(default)]
    pub error: Option<String>,
}

impl Hello {
    pub fn new() -> Self {
        Hello {
            lookout_protocol: VERSION,
            program: Some(program()),
            ..Hello::default()
        }
    }
}

pub fn program() -> String {
    format!("lookout {}", env!("CARGO_PKG_VERSION"))
}

/// Why a connection failed, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("bad frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("bad handshake: {0}")]
    Handshake(String),
    #[error("bad compressed frame: {0}")]
    Compressed(String),
}

/// Writes the handshake line.
pub async fn write_hello(w: &mut (impl AsyncWrite + Unpin), hello: &Hello) -> Result<(), WireError> {
    let mut line = serde_json::to_vec(hello).map_err(|e| WireError::Handshake(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await?;
    Ok(())
}

/// Reads the handshake line: at most [`HELLO_LIMIT`] bytes, which must be JSON.
pub async fn read_hello(r: &mut (impl AsyncBufRead + Unpin)) -> Result<Hello, WireError> {
    let mut line = Vec::new();
    let n = r.take(HELLO_LIMIT as u64).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(WireError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(WireError::Handshake(if n >= HELLO_LIMIT {
            format!("no end of line within {HELLO_LIMIT} bytes")
        } else {
            "connection closed in the middle of the handshake".into()
        }));
    }
    serde_json::from_slice(&line).map_err(|_| {
        let shown: String = String::from_utf8_lossy(&line[..line.len().min(60)])
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        WireError::Handshake(format!(
            "not a lookout handshake: `{}`",
            shown.trim_end_matches('.')
        ))
    })
}

/// Bit 31 of a frame's length: the payload is a zstd frame of the postcard bytes.
const COMPRESSED: u32 = 1 << 31;
/// Server frames longer than this are compressed (when that makes them shorter).
const COMPRESS_OVER: usize = 512;
/// zstd level of server frames: each is compressed once, for every viewer, so a slower
/// level costs little (a delta of 1,000 hosts is ~10 KB, four a second: well under a
/// millisecond a second at 9) for what it takes off every viewer's bytes. Full states
/// of a large fleet (megabytes) are compressed at 3, not to hold up an attaching viewer.
const ZSTD_LEVEL: i32 = 9;
const ZSTD_LEVEL_LARGE: i32 = 3;
const LARGE: usize = 1 << 20;

/// A server frame: as [`encode`], zstd-compressed when it is long (a delta of a large
/// fleet: host names, bitmaps and small step counts compress to about half). Compressed once
/// and broadcast, so the cost does not grow with the viewers.
pub fn encode_server<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let plain = encode(msg)?;
    if plain.len() - 4 <= COMPRESS_OVER {
        return Ok(plain);
    }
    let mut out = vec![0u8; 4];
    let level = if plain.len() > LARGE {
        ZSTD_LEVEL_LARGE
    } else {
        ZSTD_LEVEL
    };
    match zstd::stream::copy_encode(&plain[4..], &mut out, level) {
        Ok(()) if out.len() < plain.len() => {}
        _ => return Ok(plain),
    }
    let len = u32::try_from(out.len() - 4)
        .ok()
        .filter(|l| l & COMPRESSED == 0)
        .ok_or(WireError::TooLarge(out.len(), (COMPRESSED - 1) as usize))?;
    out[..4].copy_from_slice(&(len | COMPRESSED).to_be_bytes());
    Ok(out)
}

/// One frame: length then postcard bytes, ready to write (shared by every viewer).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let mut buf = postcard::to_extend(msg, vec![0u8; 4])?;
    let len = u32::try_from(buf.len() - 4)
        .ok()
        .filter(|l| l & COMPRESSED == 0)
        .ok_or(WireError::TooLarge(buf.len(), (COMPRESSED - 1) as usize))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Reads one frame of at most `limit` bytes (compressed or not, and decompressed) and
/// decodes it. `buf` holds the frame's bytes as they came.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut (impl AsyncRead + Unpin),
    limit: usize,
    buf: &mut Vec<u8>,
) -> Result<T, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    let compressed = len & COMPRESSED != 0;
    let len = (len & !COMPRESSED) as usize;
    if len > limit {
        return Err(WireError::TooLarge(len, limit));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::Io(std::io::Error::new(
                e.kind(),
                "connection closed in the middle of a frame",
            ))
        } else {
            e.into()
        }
    })?;
    if compressed {
        // Never more than the limit, however well the payload claims to compress.
        let plain = zstd::bulk::decompress(buf, limit)
            .map_err(|e| WireError::Compressed(format!("{e} (at most {limit} bytes)")))?;
        return Ok(postcard::from_bytes(&plain)?);
    }
    Ok(postcard::from_bytes(buf)?)
}

/// What a viewer sends after the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientMsg {
    Command(WireCommand),
    /// Ask the server to re-read its configuration; answered by a [`ServerMsg::Reply`].
    Reload,
    /// The viewer opened the detail view of `host` (or closed it: `None`): the server sends
    /// it that host's watched processes, whole, then as they change, each time as a
    /// [`ServerMsg::Processes`] with this `id` (the viewer's count of its requests, so that
    /// it can tell the answers to an earlier request from those to the last).
    Detail {
        id: u32,
        host: Option<String>,
    },
}

/// A trigger command as a viewer sends it: the server adds who gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireCommand {
    Acknowledge {
        trigger: String,
        host: String,
        instance: String,
    },
    Silence {
        trigger: String,
        host: String,
        instance: String,
        until: SystemTime,
    },
    Reconnect {
        host: String,
    },
}

impl WireCommand {
    /// The wire form of a dashboard's command (a name given with it is the server's to set).
    /// `None` for what has no wire form (a reload goes as [`ClientMsg::Reload`]).
    pub fn from_command(c: crate::triggers::Command) -> Option<Self> {
        use crate::triggers::Command;
        Some(match c {
            Command::Acknowledge {
                trigger,
                host,
                instance,
            } => WireCommand::Acknowledge {
                trigger,
                host,
                instance,
            },
            Command::Silence {
                trigger,
                host,
                instance,
                until,
            } => WireCommand::Silence {
                trigger,
                host,
                instance,
                until,
            },
            Command::Reconnect { host } => WireCommand::Reconnect { host },
            Command::By { command, .. } => return WireCommand::from_command(*command),
            Command::Reload(_) => return None,
        })
    }

    /// The engine's command, given by `user`.
    pub fn into_command(self, user: &str) -> crate::triggers::Command {
        use crate::triggers::Command;
        let command = match self {
            WireCommand::Acknowledge {
                trigger,
                host,
                instance,
            } => Command::Acknowledge {
                trigger,
                host,
                instance,
            },
            WireCommand::Silence {
                trigger,
                host,
                instance,
                until,
            } => Command::Silence {
                trigger,
                host,
                instance,
                until,
            },
            WireCommand::Reconnect { host } => Command::Reconnect { host },
        };
        Command::By {
            user: user.to_string(),
            command: Box::new(command),
        }
    }
}

/// What the server sends after the handshake.
#[derive(Debug, Serialize, Deserialize)]
pub enum ServerMsg<'a> {
    /// The whole state: on attach, and when a viewer fell behind (it skips ahead).
    Full(State<'a>),
    /// What changed since the previous `Full` or `Delta`.
    Delta(Delta<'a>),
    /// One event as today's JSON line (`run --headless` prints it as it is).
    Event(Cow<'a, str>),
    /// The answer to a request (`Reload`, a refused command).
    Reply { ok: bool, text: String },
    /// Something the viewer should tell its user (the server is stopping, a command dropped).
    Notice(String),
    /// Metrics the server registered at run time (check metrics): sent before the first
    /// state that uses them, so that the viewer can read their names.
    Metrics(Vec<WireMetric>),
    /// The watched processes of the host the viewer has asked for ([`ClientMsg::Detail`]),
    /// for the state of the last `Full` or `Delta` it was sent: whole after the request
    /// (and after a `Full`), then against the previous `Processes` of the same `id`. Sent to
    /// that viewer alone.
    Processes {
        id: u32,
        host: HostName,
        procs: Procs<'a>,
    },
}

/// A metric of the server's registry that is not in the built-in catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMetric {
    pub name: String,
    /// `bool`, `s`, `ms`, `%`, `load`, `bytes`, `bytes/s`, `count`, else the custom unit.
    pub unit: String,
    pub instance: String,
    /// `higher`, `lower` or `none`.
    pub risk: String,
    pub description: String,
}

/// Most run-time metrics a viewer takes from a server (the registry's ids are 16 bits).
const METRICS_LIMIT: usize = 16_384;

impl WireMetric {
    pub fn of(info: &crate::model::MetricInfo) -> Self {
        use crate::model::{Risk, Unit};
        let unit = match info.unit {
            Unit::Bool => "bool",
            Unit::Seconds => "s",
            Unit::Millis => "ms",
            Unit::Percent => "%",
            Unit::Load => "load",
            Unit::Bytes => "bytes",
            Unit::BytesPerSec => "bytes/s",
            Unit::Count => "count",
            Unit::Custom(u) => u,
        };
        WireMetric {
            name: info.name.to_string(),
            unit: unit.to_string(),
            instance: info.instance.to_string(),
            risk: match info.risk {
                Risk::Higher => "higher",
                Risk::Lower => "lower",
                Risk::None => "none",
            }
            .to_string(),
            description: info.description.to_string(),
        }
    }

    /// Adds the metric to this process's registry (known names are kept as they are).
    pub fn register(self) -> Result<Metric, String> {
        use crate::model::{NewMetric, Risk, Unit};
        if let Some(m) = Metric::by_name(&self.name) {
            return Ok(m);
        }
        if Metric::count() >= METRICS_LIMIT {
            return Err(format!("the server sent more than {METRICS_LIMIT} metrics"));
        }
        // The registry keeps its strings for the life of the process, as it does for the
        // server's own; the limit above bounds what a server can make a viewer keep.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let unit = match self.unit.as_str() {
            "bool" => Unit::Bool,
            "s" => Unit::Seconds,
            "ms" => Unit::Millis,
            "%" => Unit::Percent,
            "load" => Unit::Load,
            "bytes" => Unit::Bytes,
            "bytes/s" => Unit::BytesPerSec,
            "count" => Unit::Count,
            _ => Unit::Custom(leak(self.unit)),
        };
        let risk = match self.risk.as_str() {
            "higher" => Risk::Higher,
            "lower" => Risk::Lower,
            _ => Risk::None,
        };
        Metric::register(NewMetric {
            name: self.name,
            unit,
            instance: leak(self.instance),
            risk,
            description: self.description,
        })
    }
}

/// The metrics registered at run time from the `from`-th one of the registry on.
pub fn metrics_from(from: usize) -> Vec<WireMetric> {
    Metric::all()
        .into_iter()
        .skip(from.max(crate::model::CATALOGUE.len()))
        .map(WireMetric::of)
        .collect()
}

/// What every state message carries about the snapshot it brings the viewer to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub seq: u64,
    pub taken_at: SystemTime,
    pub interval: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct State<'a> {
    pub header: Header,
    pub hosts: Vec<WireHost<'a>>,
    pub max_risk: Cow<'a, [MaxRiskLine]>,
    pub triggers: Cow<'a, [TriggerView]>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Delta<'a> {
    pub header: Header,
    /// Hosts no longer watched: their positions in the viewer's list, ascending.
    pub removed: Vec<u32>,
    /// Hosts whose view changed, by position in the list without the removed ones, in
    /// ascending order.
    pub hosts: Vec<HostChange<'a>>,
    /// New hosts, whole, appended in this order.
    pub added: Vec<WireHost<'a>>,
    /// The maximal-risk lines, when they changed.
    pub max_risk: Option<WireMaxRisk<'a>>,
    /// The trigger lines, when they changed.
    pub triggers: Option<WireTriggers<'a>>,
}

/// One host, whole: in a full state, and a new host in a delta. A dashboard's full state
/// has no processes (`None`); `snapshot --socket`'s has every host's.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireHost<'a> {
    pub name: HostName,
    pub group: Option<Cow<'a, str>>,
    pub via: Via,
    pub status: HostStatus,
    pub error: Option<Cow<'a, str>>,
    pub last_update: Option<SystemTime>,
    pub rounds: u64,
    pub system: Option<Part<'a>>,
    pub ping: Option<Part<'a>>,
    pub external: Option<Part<'a>>,
    pub processes: Option<Procs<'a>>,
    pub checks: Option<WireChecks<'a>>,
}

/// What changed of a host the viewer has.
#[derive(Debug, Serialize, Deserialize)]
pub struct HostChange<'a> {
    /// How many hosts lie between this one and the previous change (the first change: from
    /// the start of the list): small numbers where most hosts change.
    pub skip: u32,
    /// Group, transport, status and error, when one of them changed.
    pub meta: Option<HostMeta<'a>>,
    pub last_update: Stamp,
    /// How many more samples arrived (`rounds` minus the viewer's).
    pub rounds: u64,
    pub system: Option<Part<'a>>,
    pub ping: Option<Part<'a>>,
    pub external: Option<Part<'a>>,
    pub checks: Option<WireChecks<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HostMeta<'a> {
    pub group: Option<Cow<'a, str>>,
    pub via: Via,
    pub status: HostStatus,
    pub error: Option<Cow<'a, str>>,
}

/// A host's `last_update` in a delta.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Stamp {
    /// As the viewer has it.
    Same,
    /// No sample yet.
    Never,
    /// This many milliseconds before the delta's `taken_at` (the usual case: a sample
    /// arrived shortly before the snapshot), to the millisecond.
    Before(u64),
    /// Exactly this (after `taken_at`: a clock that stepped back).
    At(SystemTime),
}

/// The maximal-risk lines in a delta, as [`WireTriggers`].
#[derive(Debug, Serialize, Deserialize)]
pub enum WireMaxRisk<'a> {
    /// Every line: when the metrics with a line changed.
    All(Cow<'a, [MaxRiskLine]>),
    /// The same metrics in the same order as the viewer has: the lines that changed (a
    /// bitmap as in [`Part::Values`]), each with its host and instance only when they
    /// changed.
    Lines {
        changed: Vec<u8>,
        lines: Vec<MaxRiskChange<'a>>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MaxRiskChange<'a> {
    pub place: Option<(HostName, Cow<'a, str>)>,
    pub value: f64,
}

/// One source's readings in a host's wire form.
#[derive(Debug, Serialize, Deserialize)]
pub enum Part<'a> {
    /// Every reading: in a full state, for a new host, and when the series themselves changed.
    Readings(Cow<'a, [Reading]>),
    /// The same series in the same order as the viewer has (a collector reports the same
    /// metrics every round): a bitmap of the positions whose value changed (bit `i % 8` of
    /// byte `i / 8`) and their new values in order. Names and instances do not travel again.
    Values { changed: Vec<u8>, values: Vec<f64> },
    /// As `Values`, at the resolution of each metric's unit ([`wire_code`]): the positions
    /// whose value moved to another code, and by how many codes each (the viewer adds them
    /// to the code of the value it has). Smaller than `Values` (one to three bytes a value
    /// instead of eight), and a value that moves within its code (a CPU share by a
    /// thousandth of a percent, a counter of 10 GB by a few kilobytes) does not travel.
    Steps { changed: Vec<u8>, steps: Vec<i64> },
}

/// How values of a unit are counted on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// In whole steps of `1 / per_unit`: percentages in hundredths, loads in thousandths.
    Linear(f64),
    /// At 12 significant bits of `value * per_unit`: exact below 4,096 (whole bytes and
    /// counts, microseconds of a time), above it within 1/4,096 of the value, which no
    /// display field of five characters can show (`1.23G`). Bytes, rates, counts, times.
    Relative(f64),
}

/// How a unit's values travel in deltas; `None` (a check's own unit): exactly.
pub fn scale(unit: crate::model::Unit) -> Option<Scale> {
    use crate::model::Unit;
    match unit {
        Unit::Percent => Some(Scale::Linear(100.0)),
        Unit::Load => Some(Scale::Linear(1000.0)),
        Unit::Bool => Some(Scale::Linear(1.0)),
        Unit::Millis | Unit::Seconds => Some(Scale::Relative(1000.0)),
        Unit::Bytes | Unit::BytesPerSec | Unit::Count => Some(Scale::Relative(1.0)),
        Unit::Custom(_) => None,
    }
}

/// Largest step count a value may have to travel as steps (well inside the integers a
/// double holds exactly, so `round(q / s * s) == q` on both sides).
const STEPS_LIMIT: f64 = (1u64 << 50) as f64;

/// `v` in whole steps of `per_unit`, when it is within [`STEPS_LIMIT`].
pub fn step_count(v: f64, per_unit: f64) -> Option<i64> {
    let q = (v * per_unit).round();
    (q.abs() < STEPS_LIMIT).then_some(q as i64)
}

/// Significant bits of [`Scale::Relative`] (the mantissa of a code).
const BITS: u32 = 12;
const HALF: i64 = 1 << (BITS - 1);
/// Largest magnitude [`relative`] codes (2^1000, about 1e301).
const RELATIVE_LIMIT: f64 = 1.0715086071862673e301;

/// The code of a value at 12 significant bits: `x` itself (rounded) below 4,096, else
/// `2048 * e + round(x / 2^e)` for the `e >= 1` that puts `x / 2^e` in [2048, 4096).
/// Codes grow with values and are contiguous (the top of a band, 4096, is the bottom of
/// the next), so a small move of a value is a small difference of codes, and
/// `relative(relative_value(c)) == c`. Negative values have negated codes.
pub fn relative(x: f64) -> Option<i64> {
    let a = x.abs();
    // Also keeps every code's value finite (`relative_value`).
    if a.is_nan() || a >= RELATIVE_LIMIT {
        return None;
    }
    let e = if a < (2 * HALF) as f64 {
        0
    } else {
        // The binary exponent of `a` (normal: it is at least 4096), less the mantissa's.
        let exp = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        exp - (BITS as i32 - 1)
    };
    let m = (a / 2f64.powi(e)).round() as i64;
    let c = HALF * i64::from(e) + m;
    Some(if x < 0.0 { -c } else { c })
}

/// The value of a code of [`relative`].
pub fn relative_value(c: i64) -> Option<f64> {
    let a = c.checked_abs()?;
    let e = (a / HALF - 1).max(0);
    let m = a - HALF * e;
    let v = m as f64 * 2f64.powi(i32::try_from(e).ok()?);
    v.is_finite().then_some(if c < 0 { -v } else { v })
}

impl Scale {
    /// The code a value travels as (`None`: too large, not finite).
    pub fn code(self, v: f64) -> Option<i64> {
        match self {
            Scale::Linear(per_unit) => step_count(v, per_unit),
            Scale::Relative(per_unit) => relative(v * per_unit),
        }
    }

    /// The value of a code, as the viewer keeps it.
    pub fn value(self, c: i64) -> Option<f64> {
        match self {
            Scale::Linear(per_unit) => Some(c as f64 / per_unit),
            Scale::Relative(per_unit) => Some(relative_value(c)? / per_unit),
        }
    }
}

/// A host's check reports in its wire form (each check's last run, in config order).
#[derive(Debug, Serialize, Deserialize)]
pub enum WireChecks<'a> {
    /// Every report: in a full state, for a new host, and when the host's list of checks
    /// changed (a check reported for the first time, a reload).
    All(Vec<WireCheck<'a>>),
    /// The same checks in the same order as the viewer has: only the reports that changed
    /// since, by position, and of those only the message and values that changed.
    Changed(Vec<CheckChange<'a>>),
}

/// One check's report, whole.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireCheck<'a> {
    pub name: Cow<'a, str>,
    pub status: u8,
    pub message: Cow<'a, str>,
    pub duration_ms: f64,
    /// `check.<name>.status` first, then the values as `check.<name>`.
    pub readings: Cow<'a, [Reading]>,
}

/// A new report of a check the viewer has.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckChange<'a> {
    /// The check's position in the host's list.
    pub index: u32,
    pub status: u8,
    /// The message, when it is not the previous report's.
    pub message: Option<Cow<'a, str>>,
    pub duration_ms: f64,
    /// The readings against the previous report's, as a source's part; `None` when equal.
    pub readings: Option<Part<'a>>,
}

/// The trigger lines in a delta.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireTriggers<'a> {
    /// Every line: when lines came, went or moved.
    All(Cow<'a, [TriggerView]>),
    /// The same lines (trigger, host, instance) in the same order as the viewer has: those
    /// that changed (a bitmap as in [`Part::Values`]). A firing line's value changes with
    /// every sample of its host, and then only the value travels; the other lines do not
    /// travel again.
    Lines {
        changed: Vec<u8>,
        lines: Vec<TriggerChange<'a>>,
    },
}

/// A changed trigger line.
#[derive(Debug, Serialize, Deserialize)]
pub enum TriggerChange<'a> {
    /// Only its value changed.
    Value(Option<f64>),
    Line(Cow<'a, TriggerView>),
}

/// A host's watched processes in its wire form.
#[derive(Debug, Serialize, Deserialize)]
pub enum Procs<'a> {
    All(Cow<'a, [ProcessDetail]>),
    /// The same processes (watch, pid, name, affinity, command line) in the same order as
    /// the viewer has: only their figures.
    Figures(Vec<ProcFigures>),
    /// As `Figures`, for the processes whose figures changed (bitmap as in [`Part::Values`]),
    /// as steps: percentages in hundredths, sizes in codes of [`relative`], each against
    /// the viewer's.
    Steps {
        changed: Vec<u8>,
        steps: Vec<ProcSteps>,
    },
    /// Another list (a watched process came or went): which of the viewer's processes stay
    /// (a bitmap over its list), how the figures of those moved (`changed`, a bitmap over
    /// the staying ones, and their steps, as in `Steps`), and the new processes whole, each
    /// with its position in the new list, in ascending order.
    Edit {
        kept: Vec<u8>,
        changed: Vec<u8>,
        steps: Vec<ProcSteps>,
        added: Vec<(u32, Cow<'a, ProcessDetail>)>,
    },
}

/// How a process's figures moved, in steps (see [`Procs::Steps`]): shares in hundredths,
/// sizes in codes of [`relative`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcSteps {
    pub cpu_pct: i64,
    pub mem_pct: i64,
    pub rss_bytes: i64,
    pub vms_bytes: i64,
    pub shared_bytes: i64,
}

/// What changes from one sample of a process to the next.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcFigures {
    pub cpu_pct: f64,
    pub mem_pct: f64,
    pub rss_bytes: u64,
    pub vms_bytes: u64,
    pub shared_bytes: u64,
}

/// Metrics travel by name: the names are the public contract, the numbering is not.
impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_respect_the_limit() {
        let msg = ClientMsg::Command(WireCommand::Reconnect { host: "alpha".into() });
        let bytes = encode(&msg).expect("encodes");
        let mut buf = Vec::new();
        let back: ClientMsg = read_frame(&mut &bytes[..], 1024, &mut buf)
            .await
            .expect("decodes");
        assert!(matches!(back, ClientMsg::Command(WireCommand::Reconnect { host }) if host == "alpha"));
        let err = read_frame::<ClientMsg>(&mut &bytes[..], 2, &mut buf)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::TooLarge(_, 2)), "{err}");
        let err = read_frame::<ClientMsg>(&mut &bytes[..bytes.len() - 1], 1024, &mut buf)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("middle of a frame"), "{err}");
        let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        let err = read_frame::<ClientMsg>(&mut &garbage[..], 1024, &mut buf)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Decode(_)), "{err}");
    }

    #[tokio::test]
    async fn handshake_refuses_garbage_readably() {
        let mut input = &b"GET / HTTP/1.1\r\n"[..];
        let err = read_hello(&mut input).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("not a lookout handshake: `GET / HTTP/1.1"),
            "{err}"
        );
        let long = vec![b'x'; HELLO_LIMIT + 10];
        let err = read_hello(&mut &long[..]).await.unwrap_err();
        assert!(err.to_string().contains("no end of line"), "{err}");
        let mut line = serde_json::to_vec(&Hello::new()).expect("json");
        line.push(b'\n');
        let hello = read_hello(&mut &line[..]).await.expect("hello");
        assert_eq!(hello.lookout_protocol, VERSION);
    }

    #[tokio::test]
    async fn run_time_metrics_travel_before_their_readings() {
        let m = WireMetric {
            name: "check.serve_wire_test".into(),
            unit: "req/s".into(),
            instance: "endpoint".into(),
            risk: "higher".into(),
            description: "a check metric".into(),
        };
        let reading = br#"{"metric":"check.serve_wire_test","instance":"","value":1.0}"#;
        assert!(
            serde_json::from_slice::<Reading>(reading).is_err(),
            "unknown before"
        );
        let bytes = encode(&ServerMsg::Metrics(vec![m.clone()])).expect("encodes");
        let ServerMsg::Metrics(list) = read_frame(&mut &bytes[..], 1024, &mut Vec::new())
            .await
            .expect("decodes")
        else {
            panic!("metrics")
        };
        let metric = list
            .into_iter()
            .next()
            .expect("one")
            .register()
            .expect("registers");
        assert_eq!(WireMetric::of(metric.info()), m);
        assert_eq!(metric.info().unit, crate::model::Unit::Custom("req/s"));
        let r: Reading = serde_json::from_slice(reading).expect("known after");
        assert_eq!(r.metric, metric);
        assert!(metrics_from(0).contains(&m));
    }

    #[tokio::test]
    async fn long_server_frames_are_compressed_and_bounded() {
        let msg = ServerMsg::Event(Cow::Owned("x".repeat(10_000)));
        let bytes = encode_server(&msg).expect("encodes");
        assert!(bytes.len() < 1000, "{}", bytes.len());
        assert_ne!(bytes[0] & 0x80, 0, "marked compressed");
        let back: ServerMsg = read_frame(&mut &bytes[..], SERVER_FRAME_LIMIT, &mut Vec::new())
            .await
            .expect("decodes");
        assert!(matches!(back, ServerMsg::Event(e) if e.len() == 10_000));
        // What it would decompress to is over the reader's limit: refused.
        let err = read_frame::<ServerMsg>(&mut &bytes[..], 5000, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Compressed(_)), "{err}");
        // Short frames go as they are.
        let note = ServerMsg::Notice("hi".into());
        assert_eq!(
            encode_server(&note).expect("encodes"),
            encode(&note).expect("encodes")
        );
        // Garbage that says it is compressed.
        let garbage = [0x80, 0, 0, 3, 1, 2, 3];
        let err = read_frame::<ServerMsg>(&mut &garbage[..], 1024, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bad compressed frame"), "{err}");
    }
}
