//! What a [`Recording`](super::Recording) keeps between seeks, so that the next one (a `[`
//! or `]` step in rewind, one interval away) redoes little:
//!
//! - decompressed data blocks (read, checked and decompressed once), bounded by
//!   [`RAW_BYTES`];
//! - decoded states between the blocks of a segment ([`Chain`]): a step starts from the
//!   state just before the rows it needs instead of from the key block.
//!
//! A cached state is exactly what decoding from the key block had at that point: a chain is
//! the decoding of one segment from one key block with one split between the blocks read
//! for history only and those read in full (what the reader's cold path does for a moment),
//! and a state is kept only between blocks whose rows all come before any history the
//! request gathers. So a step answered from the cache equals the same seek done cold
//! (`reader::tests`). A chain that met a damaged block is not used past it: those seeks
//! take the cold path, which skips the damage as before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::chunk::Decoder;
use super::format::BlockMeta;
use crate::model::HostName;

/// Most bytes of decompressed blocks kept: a data block of 1,000 hosts is ~130 KiB (a key
/// block ~290 KiB), so about two key runs of them. Decompressing is a small part of a
/// seek (decoding the rows is most of it), so this stays small.
pub const RAW_BYTES: usize = 8 << 20;
/// Most host states kept in decoded states, over all chains (1,000 hosts: 6 states; a host
/// state of ~40 series takes roughly 1 KiB, estimated from its fields).
pub const STATE_BUDGET: usize = 6_000;
/// States kept right before the window of the last request: a `[` step starts at the one
/// before it.
pub const DENSE: usize = 2;
/// And one every this many blocks from the chain's start: a run of `[` steps past the dense
/// ones starts at most this many blocks early.
pub const SPARSE: usize = 5;
/// Chains kept (a step back across a key block switches chains; the way back uses the
/// previous one).
pub const CHAINS: usize = 4;

/// A decoded state between two blocks of a chain.
pub struct Point {
    /// Index (among the segment's data blocks) of the block decoding goes on with.
    pub next: usize,
    /// The block before it, to check that the segment still has it there.
    pub last: BlockMeta,
    pub state: Decoder,
}

/// The decoding of one segment from the key block `start`, blocks before `full` read for
/// history only (rows of `only` hosts).
pub struct Chain {
    pub path: PathBuf,
    pub start: BlockMeta,
    pub full: BlockMeta,
    pub only: Option<Vec<HostName>>,
    /// Sorted by `next`.
    pub points: Vec<Point>,
    /// Index of a block that did not read: the chain is not used for requests reaching it.
    pub damaged_at: Option<usize>,
}

impl Chain {
    pub fn new(path: PathBuf, start: BlockMeta, full: BlockMeta, only: Option<Vec<HostName>>) -> Chain {
        Chain {
            path,
            start,
            full,
            only,
            points: Vec::new(),
            damaged_at: None,
        }
    }

    fn cost(&self) -> usize {
        self.points.iter().map(|p| p.state.hosts.len().max(1)).sum()
    }

    pub fn has(&self, next: usize) -> bool {
        self.points.binary_search_by_key(&next, |q| q.next).is_ok()
    }

    /// Keeps a state unless one is kept there already.
    pub fn keep(&mut self, p: Point) {
        match self.points.binary_search_by_key(&p.next, |q| q.next) {
            Ok(_) => {}
            Err(i) => self.points.insert(i, p),
        }
    }
}

struct Raw {
    meta: BlockMeta,
    bytes: Arc<Vec<u8>>,
    used: u64,
}

/// The cache of one recording.
#[derive(Default)]
pub struct SeekCache {
    raw: HashMap<(PathBuf, u64), Raw>,
    raw_bytes: usize,
    tick: u64,
    /// Least recently used first.
    chains: Vec<Chain>,
    /// Segment decodes that started from a kept state (tests check the cache is used).
    pub warm_starts: u64,
}

impl SeekCache {
    /// A decompressed block read before (same place, same header).
    pub fn raw(&mut self, path: &std::path::Path, meta: &BlockMeta) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        let r = self.raw.get_mut(&(path.to_path_buf(), meta.offset))?;
        if r.meta != *meta {
            return None;
        }
        r.used = tick;
        Some(r.bytes.clone())
    }

    pub fn put_raw(&mut self, path: &std::path::Path, meta: BlockMeta, bytes: Arc<Vec<u8>>) {
        self.tick += 1;
        self.raw_bytes += bytes.len();
        let old = self.raw.insert(
            (path.to_path_buf(), meta.offset),
            Raw {
                meta,
                bytes,
                used: self.tick,
            },
        );
        if let Some(old) = old {
            self.raw_bytes -= old.bytes.len();
        }
        while self.raw_bytes > RAW_BYTES && self.raw.len() > 1 {
            let Some(oldest) = self
                .raw
                .iter()
                .min_by_key(|(_, r)| r.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(r) = self.raw.remove(&oldest) {
                self.raw_bytes -= r.bytes.len();
            }
        }
    }

    /// Takes the chain out of the cache (to be given back with [`SeekCache::give_back`]),
    /// or a new one.
    pub fn take_chain(
        &mut self,
        path: &std::path::Path,
        start: &BlockMeta,
        full: &BlockMeta,
        only: Option<Vec<HostName>>,
    ) -> Chain {
        let found = self
            .chains
            .iter()
            .position(|c| c.path == path && c.start == *start && c.full == *full && c.only == only);
        match found {
            Some(i) => self.chains.remove(i),
            None => Chain::new(path.to_path_buf(), *start, *full, only),
        }
    }

    /// Puts a chain back as the most recently used, and keeps the states within
    /// [`STATE_BUDGET`]: other chains' states go first (least recently used first), then
    /// this chain's sparse states farthest from `window` (the block the last request's
    /// history began at); the dense ones before `window` stay.
    pub fn give_back(&mut self, chain: Chain, window: usize) {
        self.chains.push(chain);
        if self.chains.len() > CHAINS {
            self.chains.remove(0);
        }
        let mut total: usize = self.chains.iter().map(Chain::cost).sum();
        while total > STATE_BUDGET && self.chains.len() > 1 {
            total -= self.chains[0].cost();
            self.chains.remove(0);
        }
        let Some(chain) = self.chains.last_mut() else {
            return;
        };
        while total > STATE_BUDGET {
            let far = chain
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| !(p.next <= window && p.next + DENSE > window))
                .max_by_key(|(_, p)| window.abs_diff(p.next))
                .map(|(i, _)| i);
            let Some(i) = far else { break };
            total -= chain.points[i].state.hosts.len().max(1);
            chain.points.remove(i);
        }
    }

    /// Forgets what came from one segment (it changed or is gone).
    pub fn forget(&mut self, path: &std::path::Path) {
        self.raw.retain(|(p, _), _| p != path);
        self.raw_bytes = self.raw.values().map(|r| r.bytes.len()).sum();
        self.chains.retain(|c| c.path != path);
    }

    /// Forgets everything (back to live).
    pub fn clear(&mut self) {
        *self = SeekCache::default();
    }
}
