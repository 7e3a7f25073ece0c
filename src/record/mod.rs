//! Recording and rewind: the on-disk store of everything the engine published.
//!
//! - [`format`]: the segment file (header, checked blocks, index, trailer).
//! - [`codec`]: varints and how a value is stored.
//! - [`chunk`]: what data and event blocks hold; the encoder and the decoder.
//! - [`writer`]: the recorder thread (an output of the engine), rotation, retention, limits.
//! - [`reader`]: the recording directory as a whole: its span, the snapshot at a time, the
//!   events of a time range; `cache` keeps what the last seeks decoded, for the next step.
//! - [`query`]: `lookout snapshot --at` and `lookout events`.
//! - [`timespec`]: the times users type (`03:10`, `2026-12-01 03:10`, `-45m`).
//!
//! docs/record.md explains the format and why it is built this way.

mod cache;
pub mod chunk;
pub mod codec;
pub mod format;
pub mod query;
pub mod reader;
#[cfg(test)]
mod seek_tests;
#[cfg(test)]
mod story_tests;
pub mod timespec;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use reader::Recording;
pub use writer::{RecState, RecordStatus, Recorder};

/// File name extension of a segment.
pub const SEGMENT_EXT: &str = "lkr";

/// `[record]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFile {
    pub enabled: Option<bool>,
    pub dir: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    pub max_size: Option<Spanned<String>>,
}

/// `[record]` validated.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    pub enabled: bool,
    pub dir: PathBuf,
    pub retention: Duration,
    pub max_size: u64,
    /// Set by `lookout replay` (never from the file): the dashboard shows a recording
    /// played at this speed.
    pub replay_speed: Option<f64>,
    /// How often blocks are written and key blocks begin (never from the file: the
    /// defaults are [`writer::FLUSH`] and [`writer::KEY_EVERY`]; tests shorten them).
    pub flush: Duration,
    pub key_every: Duration,
}

impl Default for RecordSettings {
    fn default() -> Self {
        RecordSettings {
            enabled: true,
            dir: default_dir(),
            retention: Duration::from_secs(7 * 86_400),
            max_size: 2 << 30,
            replay_speed: None,
            flush: writer::FLUSH,
            key_every: writer::KEY_EVERY,
        }
    }
}

impl RecordSettings {
    pub fn from_file(
        f: RecordFile,
        loc: &crate::config::Locator,
        errors: &mut Vec<crate::config::ConfigError>,
    ) -> RecordSettings {
        let d = RecordSettings::default();
        let max_size = match &f.max_size {
            None => d.max_size,
            Some(s) => match parse_size(s.get_ref()) {
                Some(n) if n >= 1 << 20 => n,
                Some(_) => {
                    errors.push(loc.error(s.span(), "`max_size` in [record]: at least 1MiB"));
                    d.max_size
                }
                None => {
                    errors.push(loc.error(
                        s.span(),
                        format!(
                            "`max_size` in [record]: `{}` is not a size (expected e.g. \"500MiB\", \"2GiB\", \"10GB\")",
                            s.get_ref()
                        ),
                    ));
                    d.max_size
                }
            },
        };
        RecordSettings {
            enabled: f.enabled.unwrap_or(true),
            dir: f.dir.as_deref().map_or_else(|| d.dir.clone(), expand_home),
            retention: f.retention.unwrap_or(d.retention).max(Duration::from_secs(60)),
            max_size,
            ..d
        }
    }

    /// Largest segment before rotation: a twentieth of `max_size`, so that the size limit
    /// deletes old data in steps of about 5%.
    pub fn segment_cap(&self) -> u64 {
        (self.max_size / 20).clamp(256 << 10, 256 << 20)
    }
}

fn expand_home(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
    {
        return home.join(rest);
    }
    PathBuf::from(p)
}

/// `$XDG_STATE_HOME/lookout/recordings`, else `~/.local/state/lookout/recordings`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| expand_home("~/.local/state"))
        .join("lookout")
        .join("recordings")
}

/// `2GiB`, `500MB`, `1048576`: bytes (binary and decimal units, case-insensitive).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0_f64.powi(4),
        _ => return None,
    };
    let v = n * mult;
    (0.0..1.8e19).contains(&v).then_some(v as u64)
}

/// `20261201T031042Z`: the UTC start time at the front of a segment's name, so names sort
/// by time and say when they begin.
pub fn file_stamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "00000000T000000Z".into())
}

/// Starts the recorder for a front end that records (the dashboard, `run --headless`), or
/// nothing when the config or `--no-record` turned it off.
pub fn start(config: &crate::config::Config, running: &crate::runtime::Running) -> Option<Recorder> {
    if !config.record.enabled {
        return None;
    }
    let rec = Recorder::spawn(
        config.record.clone(),
        config.general.interval,
        running.snapshots.clone(),
        running.subscribe(),
    );
    writer::set_current(&rec.status);
    Some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("500 MB"), Some(500_000_000));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("1.5kib"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size("-1GB"), None);
    }

    #[test]
    fn config_table() {
        let c = crate::config::parse(
            "[record]\nenabled = false\ndir = \"/tmp/x\"\nretention = \"1d\"\nmax_size = \"100MiB\"\n",
            "t.toml",
            None,
        )
        .expect("valid");
        assert!(!c.record.enabled);
        assert_eq!(c.record.dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.record.retention, Duration::from_secs(86_400));
        assert_eq!(c.record.max_size, 100 << 20);
        let e =
            crate::config::parse("[record]\nmax_size = \"huge\"\n", "t.toml", None).expect_err("bad size");
        assert!(e.to_string().contains("t.toml:2:12"), "{e}");
        assert!(e.to_string().contains("`huge` is not a size"), "{e}");
        let e = crate::config::parse("[record]\nretension = \"1d\"\n", "t.toml", None).expect_err("misspelt");
        assert!(e.to_string().contains("did you mean `retention`"), "{e}");
    }
}
