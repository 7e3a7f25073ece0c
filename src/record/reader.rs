//! A recording directory as a whole: the segments in it (each indexed without reading its
//! payloads), the span they cover, the snapshot as of any moment, and the events of a range.
//!
//! A snapshot at T decodes, in each segment covering T, from the last key block at or
//! before T up to T: at most [`KEY_EVERY`](super::writer::KEY_EVERY) of data. A block that
//! fails its checksum or does not decode is skipped with a log line, and decoding resumes
//! at the next key block; a file that is not a segment at all is skipped the same way.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::SEGMENT_EXT;
use super::cache::{DENSE, Point, SPARSE, SeekCache};
use super::chunk::{Decoder, HistorySpec, decode_events, from_ms, ms};
use super::format::{self, BlockMeta, Kind, SegmentIndex};
use super::timespec;
use crate::snapshot::Snapshot;

/// What a user sees when a recording cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read the recording directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("no recording in {0} (lookout records there while the dashboard or `run --headless` runs)")]
    Empty(PathBuf),
    #[error("{at} is outside the recorded span: {span}")]
    Outside { at: String, span: String },
    #[error("nothing was recorded at {at}; recorded: {spans}")]
    Gap { at: String, spans: String },
}

/// The segment files of a directory, oldest first (names begin with the start time).
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(PathBuf, Metadata)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == SEGMENT_EXT)
            && let Ok(meta) = entry.metadata()
            && meta.is_file()
        {
            out.push((path, meta));
        }
    }
    out.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(out)
}

struct Seg {
    path: PathBuf,
    /// The file's length and modification time when indexed: a file that still has both
    /// is not indexed again by [`Recording::refresh`].
    stamp: (u64, Option<SystemTime>),
    index: SegmentIndex,
    /// First and last time of its data blocks.
    span: (i64, i64),
}

/// An opened recording directory.
pub struct Recording {
    pub dir: PathBuf,
    segs: Vec<Seg>,
    problems: Mutex<Problems>,
    /// What the last seeks decoded (a `[` step starts from there).
    cache: Mutex<SeekCache>,
}

/// Messages about damage not yet taken, and every one said so far: a damaged block read
/// again (each `[` in rewind) is reported once, not at every read.
#[derive(Default)]
struct Problems {
    pending: Vec<String>,
    said: std::collections::HashSet<String>,
}

impl Recording {
    /// Indexes every segment of `dir`; unreadable ones are skipped with a message.
    pub fn open(dir: &Path) -> Result<Recording, RecordError> {
        let mut rec = Recording {
            dir: dir.to_path_buf(),
            segs: Vec::new(),
            problems: Mutex::new(Problems::default()),
            cache: Mutex::new(SeekCache::default()),
        };
        rec.refresh()?;
        Ok(rec)
    }

    /// Takes in what changed in the directory since it was opened: new segments, the one
    /// being written (grown), deleted ones. A segment whose length and modification time
    /// are unchanged keeps its index, so a rewind step does not index a day of closed
    /// segments again.
    pub fn refresh(&mut self) -> Result<(), RecordError> {
        let list = list_segments(&self.dir).map_err(|e| RecordError::Dir(self.dir.clone(), e))?;
        let mut known: std::collections::HashMap<PathBuf, Seg> =
            self.segs.drain(..).map(|s| (s.path.clone(), s)).collect();
        let mut segs = Vec::new();
        for (path, meta) in list {
            let stamp = (meta.len(), meta.modified().ok());
            if let Some(seg) = known.remove(&path) {
                if seg.stamp == stamp {
                    segs.push(seg);
                    continue;
                }
                // A segment being written grows, and keeps what it had; any other change
                // (a closed one rewritten, one cut) makes what was decoded from it stale.
                if seg.index.closed || stamp.0 < seg.stamp.0 {
                    self.cache_mut().forget(&path);
                }
            }
            match format::index_segment(&path) {
                Ok(index) => {
                    let live = super::writer::in_use(&path);
                    for p in &index.problems {
                        // The last block of a segment being written may be half there.
                        if !(live && p.contains("cut off")) {
                            self.problem(format!("{}: {p}", path.display()));
                        }
                    }
                    let data = index.blocks.iter().filter(|b| b.kind == Kind::Data);
                    let t0 = data.clone().map(|b| b.t_first).min();
                    let t1 = data.map(|b| b.t_last).max();
                    if let (Some(t0), Some(t1)) = (t0, t1) {
                        segs.push(Seg {
                            path,
                            stamp,
                            index,
                            span: (t0, t1),
                        });
                    }
                }
                Err(e) => self.problem(format!("{}: skipped: {e}", path.display())),
            }
        }
        for gone in known.keys() {
            self.cache_mut().forget(gone);
        }
        self.segs = segs;
        if self.segs.is_empty() {
            return Err(RecordError::Empty(self.dir.clone()));
        }
        Ok(())
    }

    fn problem(&self, p: String) {
        let mut problems = self
            .problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if problems.said.insert(p.clone()) {
            log::warn!(target: "lookout", "recording: {p}");
            problems.pending.push(p);
        }
    }

    /// Messages about skipped files and blocks since the last call.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(
            &mut self
                .problems
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pending,
        )
    }

    /// The first and last recorded moment.
    pub fn span(&self) -> (SystemTime, SystemTime) {
        let t0 = self.segs.iter().map(|s| s.span.0).min().unwrap_or(0);
        let t1 = self.segs.iter().map(|s| s.span.1).max().unwrap_or(0);
        (from_ms(t0), from_ms(t1))
    }

    /// The poll interval of the newest segment (2 s when it did not say).
    pub fn interval(&self) -> Duration {
        let ms = self.segs.last().map_or(0, |s| s.index.interval_ms);
        if ms == 0 {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(u64::from(ms))
        }
    }

    fn spans_text(&self) -> String {
        // Segments that follow each other (rotation) make one span.
        let mut spans: Vec<(i64, i64)> = Vec::new();
        let mut all: Vec<(i64, i64)> = self.segs.iter().map(|s| s.span).collect();
        all.sort_unstable();
        let slack = self.slack_ms();
        for (a, b) in all {
            match spans.last_mut() {
                Some(last) if a <= last.1 + slack => last.1 = last.1.max(b),
                _ => spans.push((a, b)),
            }
        }
        spans
            .iter()
            .map(|&(a, b)| timespec::span_text(from_ms(a), from_ms(b)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How long after its last block a segment still speaks for the moment: a few intervals.
    fn slack_ms(&self) -> i64 {
        (self.interval() * 3 + super::writer::FLUSH).as_millis() as i64
    }

    /// Checks that a time is one the recording can answer for.
    pub fn check_time(&self, at: SystemTime) -> Result<(), RecordError> {
        let t = ms(at);
        let (a, b) = self.span();
        if t < ms(a) || t > ms(b) + self.slack_ms() {
            return Err(RecordError::Outside {
                at: timespec::full(at),
                span: timespec::span_text(a, b),
            });
        }
        if self.covering(t).next().is_none() {
            return Err(RecordError::Gap {
                at: timespec::full(at),
                spans: self.spans_text(),
            });
        }
        Ok(())
    }

    fn covering(&self, t: i64) -> impl Iterator<Item = &Seg> {
        let slack = self.slack_ms();
        self.segs
            .iter()
            .filter(move |s| s.span.0 <= t && t <= s.span.1 + slack)
    }

    /// The snapshot as of `at`, with history gathered as `history` asks.
    pub fn snapshot_at(&self, at: SystemTime, history: Option<HistorySpec>) -> Result<Snapshot, RecordError> {
        self.check_time(at)?;
        let t = ms(at);
        let mut merged: Option<Decoder> = None;
        let mut history = history;
        for seg in self.covering(t) {
            let d = self.decode(seg, t, history.take());
            history = d.history.clone();
            match &mut merged {
                None => merged = Some(d),
                Some(m) => m.merge(d),
            }
        }
        let mut d = merged.unwrap_or_default();
        Ok(d.snapshot(at, self.interval()))
    }

    /// Forgets what earlier seeks decoded (the dashboard went back to live).
    pub fn clear_cache(&self) {
        self.cache_mut().clear();
    }

    /// How many segment decodes started from a state the cache kept.
    #[cfg(test)]
    pub(crate) fn warm_starts(&self) -> u64 {
        self.cache_mut().warm_starts
    }

    fn cache_mut(&self) -> std::sync::MutexGuard<'_, SeekCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decodes one segment up to `t`, starting at the key block that `history` (or `t`)
    /// needs; when a start fails, from the key block before it.
    fn decode(&self, seg: &Seg, t: i64, history: Option<HistorySpec>) -> Decoder {
        let data: Vec<&BlockMeta> = seg
            .index
            .blocks
            .iter()
            .filter(|b| b.kind == Kind::Data && b.t_first <= t)
            .collect();
        let keys: Vec<usize> = (0..data.len()).filter(|&i| data[i].is_key()).collect();
        let from = history.as_ref().map_or(t, |h| h.from.min(t));
        let k_t = keys.iter().rposition(|&i| data[i].t_first <= t);
        let k_h = keys.iter().rposition(|&i| data[i].t_first <= from).or(k_t);
        let (Some(k_t), Some(k_h)) = (k_t, k_h) else {
            return Decoder::with_history(history);
        };
        if let Some(d) = self.decode_warm(seg, &data, keys[k_h], keys[k_t], t, history.as_ref()) {
            return d;
        }
        // A block did not read: decode as before, skipping damage and finding another
        // start.
        let mut file = match File::open(&seg.path) {
            Ok(f) => f,
            Err(e) => {
                self.problem(format!("{}: {e}", seg.path.display()));
                return Decoder::default();
            }
        };
        let len = file.metadata().map_or(0, |m| m.len());
        let mut start = k_h;
        let mut full_from = keys[k_t];
        let history_spec = history;
        loop {
            let mut d = Decoder::with_history(history_spec.clone());
            let mut key_ok = true;
            let mut full_key_ok = true;
            for (i, b) in data.iter().enumerate().skip(keys[start]) {
                let result = format::read_block_at(&mut file, b.offset, len).and_then(|(_, payload)| {
                    let raw = format::decompress(&payload)?;
                    d.apply(b.is_key(), &raw, t, i >= full_from)
                        .map_err(|e| format!("block at offset {}: {e}", b.offset))
                });
                if let Err(e) = result {
                    self.problem(format!(
                        "{}: {e}; skipped to the next key block",
                        seg.path.display()
                    ));
                    d.started = false;
                    if i == keys[start] {
                        key_ok = false;
                    }
                    if i == full_from {
                        full_key_ok = false;
                    }
                }
            }
            if !full_key_ok && full_from > keys[start] {
                // The state was to start from that key block: take it from the earlier
                // blocks instead, reading them in full.
                full_from = keys[start];
                continue;
            }
            if key_ok || start == 0 || !d.hosts.is_empty() {
                return d;
            }
            start -= 1;
            full_from = full_from.min(keys[start]);
        }
    }

    /// Decodes one segment up to `t` from the key block `data[start]`, blocks before
    /// `data[full_from]` for history only, as the first attempt of [`Recording::decode`]
    /// does, but from the latest state the cache holds before the rows this request needs,
    /// and through the cache's decompressed blocks. Keeps states on the way for the next
    /// request. None when a block does not read (then nothing of this chain past that block
    /// is used again; the caller decodes cold and reports the damage).
    fn decode_warm(
        &self,
        seg: &Seg,
        data: &[&BlockMeta],
        start: usize,
        full_from: usize,
        t: i64,
        history: Option<&HistorySpec>,
    ) -> Option<Decoder> {
        // Rows from `from` on feed the history; a state kept between blocks holds none.
        let from = history.map_or(t, |h| h.from.min(t));
        // Only blocks read for history only look at `only`.
        let only = if start < full_from {
            history.and_then(|h| h.only.clone())
        } else {
            None
        };
        let mut cache = self.cache_mut();
        let mut chain = cache.take_chain(&seg.path, data[start], data[full_from], only);
        if chain.damaged_at.is_some_and(|i| i < data.len()) {
            cache.give_back(chain, start);
            return None;
        }
        // The first block with rows the history (or the moment) needs: states before it
        // hold none of them, so they are kept.
        let window = data
            .iter()
            .position(|b| b.t_last >= from)
            .unwrap_or(data.len())
            .max(start);
        let point = chain
            .points
            .iter()
            .rev()
            .find(|p| p.next <= window && p.next > start && *data[p.next - 1] == p.last);
        let (mut d, first) = match point {
            Some(p) => (p.state.state_clone(), p.next),
            None => (Decoder::default(), start),
        };
        cache.warm_starts += u64::from(first > start);
        d.history = history.cloned();
        let mut file: Option<(File, u64)> = None;
        for (i, b) in data.iter().enumerate().skip(first) {
            let raw = match cache.raw(&seg.path, b) {
                Some(raw) => raw,
                None => {
                    if file.is_none()
                        && let Ok(f) = File::open(&seg.path)
                    {
                        let len = f.metadata().map_or(0, |m| m.len());
                        file = Some((f, len));
                    }
                    let raw = match &mut file {
                        Some((f, len)) => format::read_block_at(f, b.offset, *len)
                            .and_then(|(_, payload)| format::decompress(&payload)),
                        None => Err(String::new()),
                    };
                    let Ok(raw) = raw else {
                        chain.damaged_at = Some(i);
                        cache.give_back(chain, window);
                        return None;
                    };
                    let raw = Arc::new(raw);
                    cache.put_raw(&seg.path, **b, raw.clone());
                    raw
                }
            };
            if d.apply(b.is_key(), &raw, t, i >= full_from).is_err() {
                chain.damaged_at = Some(i);
                cache.give_back(chain, window);
                return None;
            }
            let next = i + 1;
            if next <= window
                && (next + DENSE > window || (next - start).is_multiple_of(SPARSE))
                && !chain.has(next)
            {
                chain.keep(Point {
                    next,
                    last: **b,
                    state: d.state_clone(),
                });
            }
        }
        cache.give_back(chain, window);
        Some(d)
    }

    /// Reads every data block: (bytes of all segment files, values stored, data blocks
    /// that could not be read). For the bytes-per-value figures of docs/record.md.
    pub fn stats(&self) -> (u64, u64, usize) {
        let (mut bytes, mut values, mut bad) = (0u64, 0u64, 0usize);
        for seg in &self.segs {
            let Ok(mut file) = File::open(&seg.path) else {
                continue;
            };
            let len = file.metadata().map_or(0, |m| m.len());
            bytes += len;
            let mut d = Decoder::default();
            for b in seg.index.blocks.iter().filter(|b| b.kind == Kind::Data) {
                let ok = format::read_block_at(&mut file, b.offset, len).is_ok_and(|(_, payload)| {
                    format::decompress(&payload)
                        .is_ok_and(|raw| d.apply(b.is_key(), &raw, i64::MAX, true).is_ok())
                });
                bad += usize::from(!ok);
            }
            values += d.values;
        }
        (bytes, values, bad)
    }

    /// The recorded events from `since` to `until` (inclusive), in time order, as the JSON
    /// lines the headless runner prints.
    pub fn events(&self, since: SystemTime, until: SystemTime) -> Vec<(SystemTime, String)> {
        let (a, b) = (ms(since), ms(until));
        let mut out: Vec<(i64, usize, String)> = Vec::new();
        for seg in &self.segs {
            let blocks = seg
                .index
                .blocks
                .iter()
                .filter(|m| m.kind == Kind::Events && m.t_last >= a && m.t_first <= b);
            let mut file = None;
            for m in blocks {
                let f = match &mut file {
                    Some(f) => f,
                    None => match File::open(&seg.path) {
                        Ok(f) => file.insert(f),
                        Err(e) => {
                            self.problem(format!("{}: {e}", seg.path.display()));
                            break;
                        }
                    },
                };
                let len = f.metadata().map_or(0, |x| x.len());
                let result = format::read_block_at(f, m.offset, len).and_then(|(_, payload)| {
                    let raw = format::decompress(&payload)?;
                    decode_events(&raw).map_err(|e| format!("block at offset {}: {e}", m.offset))
                });
                match result {
                    Ok(events) => {
                        for (t, line) in events {
                            if t >= a && t <= b {
                                let n = out.len();
                                out.push((t, n, line));
                            }
                        }
                    }
                    Err(e) => self.problem(format!("{}: {e}; skipped", seg.path.display())),
                }
            }
        }
        out.sort_by_key(|e| (e.0, e.1));
        out.into_iter().map(|(t, _, l)| (from_ms(t), l)).collect()
    }
}
