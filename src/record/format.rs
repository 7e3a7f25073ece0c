//! The segment file: a header, then self-checking blocks, then (once closed) an index block
//! and a trailer pointing at it.
//!
//! ```text
//! segment  = header(24) block* [index-block trailer(16)]
//! header   = "LKREC01\n" start_ms:i64le pid:u32le interval_ms:u32le
//! block    = magic:"LKBK" kind:u8 flags:u8 0:u16 t_first:i64le t_last:i64le len:u32le crc:u32le payload[len]
//! trailer  = index_offset:u64le "LKIDXEND"
//! ```
//! The CRC covers the block header's first 28 bytes and the payload, so a flipped bit
//! anywhere in a block is found. Data and event payloads are zstd frames. A segment that was
//! not closed (a crash) has no trailer: its index is rebuilt from the block headers alone,
//! without reading payloads. A bad header is skipped by searching for the next magic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub const SEGMENT_MAGIC: &[u8; 8] = b"LKREC01\n";
pub const HEADER_LEN: u64 = 24;
pub const BLOCK_MAGIC: &[u8; 4] = b"LKBK";
pub const BLOCK_HEADER_LEN: usize = 32;
pub const TRAILER_MAGIC: &[u8; 8] = b"LKIDXEND";
pub const TRAILER_LEN: u64 = 16;
/// Larger payloads are taken for corruption (a block holds a few seconds of data).
pub const MAX_PAYLOAD: u32 = 256 << 20;

/// What a block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Host rows and trigger lists (zstd).
    Data = 1,
    /// Event JSON lines (zstd).
    Events = 2,
    /// The segment's block list (raw), written when it is closed.
    Index = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Data),
            2 => Some(Kind::Events),
            3 => Some(Kind::Index),
            _ => None,
        }
    }
}

/// Flag of a data block that starts a key run: it holds every host's whole state and its
/// values are not deltas, so decoding can start there.
pub const FLAG_KEY: u8 = 1;

/// Where one block is and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    pub offset: u64,
    pub kind: Kind,
    pub flags: u8,
    pub t_first: i64,
    pub t_last: i64,
    pub len: u32,
}

impl BlockMeta {
    pub fn is_key(&self) -> bool {
        self.kind == Kind::Data && self.flags & FLAG_KEY != 0
    }
}

pub fn segment_header(start_ms: i64, pid: u32, interval_ms: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&start_ms.to_le_bytes());
    h[16..20].copy_from_slice(&pid.to_le_bytes());
    h[20..24].copy_from_slice(&interval_ms.to_le_bytes());
    h
}

/// One whole block (header and payload) ready to be written with a single `write`.
pub fn block(kind: Kind, flags: u8, t_first: i64, t_last: i64, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(BLOCK_HEADER_LEN + payload.len());
    b.extend_from_slice(BLOCK_MAGIC);
    b.push(kind as u8);
    b.push(flags);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&t_first.to_le_bytes());
    b.extend_from_slice(&t_last.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[..28]);
    crc.update(payload);
    b.extend_from_slice(&crc.finalize().to_le_bytes());
    b.extend_from_slice(payload);
    b
}

fn le_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// A block header that looks sane (the CRC is checked when the payload is read).
fn parse_header(h: &[u8], offset: u64) -> Option<(BlockMeta, u32)> {
    if h.len() < BLOCK_HEADER_LEN || &h[..4] != BLOCK_MAGIC {
        return None;
    }
    let kind = Kind::from_u8(h[4])?;
    let t_first = le_i64(&h[8..]);
    let t_last = le_i64(&h[16..]);
    let len = le_u32(&h[24..]);
    if len > MAX_PAYLOAD || t_last < t_first {
        return None;
    }
    let meta = BlockMeta {
        offset,
        kind,
        flags: h[5],
        t_first,
        t_last,
        len,
    };
    Some((meta, le_u32(&h[28..])))
}

/// The index block's payload: every block's place and span, fixed width.
pub fn index_payload(blocks: &[BlockMeta]) -> Vec<u8> {
    let mut p = Vec::with_capacity(blocks.len() * 30);
    for b in blocks {
        p.extend_from_slice(&b.offset.to_le_bytes());
        p.push(b.kind as u8);
        p.push(b.flags);
        p.extend_from_slice(&b.t_first.to_le_bytes());
        p.extend_from_slice(&b.t_last.to_le_bytes());
        p.extend_from_slice(&b.len.to_le_bytes());
    }
    p
}

fn parse_index(p: &[u8], file_len: u64) -> Option<Vec<BlockMeta>> {
    if !p.len().is_multiple_of(30) {
        return None;
    }
    p.chunks_exact(30)
        .map(|c| {
            let offset = le_i64(&c[0..]) as u64;
            let meta = BlockMeta {
                offset,
                kind: Kind::from_u8(c[8])?,
                flags: c[9],
                t_first: le_i64(&c[10..]),
                t_last: le_i64(&c[18..]),
                len: le_u32(&c[26..]),
            };
            (offset + BLOCK_HEADER_LEN as u64 + u64::from(meta.len) <= file_len).then_some(meta)
        })
        .collect()
}

pub fn trailer(index_offset: u64) -> [u8; TRAILER_LEN as usize] {
    let mut t = [0u8; TRAILER_LEN as usize];
    t[..8].copy_from_slice(&index_offset.to_le_bytes());
    t[8..].copy_from_slice(TRAILER_MAGIC);
    t
}

/// The end of a closed segment whose index goes at offset `at`: the index block over
/// `blocks` and the trailer that points at it (what a writer appends when it closes).
pub fn segment_end(blocks: &[BlockMeta], at: u64) -> Vec<u8> {
    let t0 = blocks.iter().map(|b| b.t_first).min().unwrap_or(0);
    let t1 = blocks.iter().map(|b| b.t_last).max().unwrap_or(0);
    let mut out = block(Kind::Index, 0, t0, t1, &index_payload(blocks));
    out.extend_from_slice(&trailer(at));
    out
}

/// A segment as the reader knows it: its blocks and what went wrong finding them.
#[derive(Debug, Clone)]
pub struct SegmentIndex {
    pub start_ms: i64,
    pub pid: u32,
    /// The poll interval of the recording process (for staleness).
    pub interval_ms: u32,
    pub blocks: Vec<BlockMeta>,
    /// Whether the index came from the trailer (the segment was closed).
    pub closed: bool,
    /// Problems met while indexing (bad headers skipped, a cut-off last block).
    pub problems: Vec<String>,
}

/// Why a file is not a segment at all.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a lookout recording (bad header)")]
    BadHeader,
}

/// Reads a segment's index: from its trailer when it was closed, else by walking the block
/// headers (payloads are skipped, not read).
pub fn index_segment(path: &Path) -> Result<SegmentIndex, SegmentError> {
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let mut h = [0u8; HEADER_LEN as usize];
    if f.read_exact(&mut h).is_err() || &h[..8] != SEGMENT_MAGIC {
        return Err(SegmentError::BadHeader);
    }
    let start_ms = le_i64(&h[8..]);
    let pid = le_u32(&h[16..]);
    let mut seg = SegmentIndex {
        start_ms,
        pid,
        interval_ms: le_u32(&h[20..]),
        blocks: Vec::new(),
        closed: false,
        problems: Vec::new(),
    };
    if let Some(blocks) = read_trailer_index(&mut f, file_len) {
        seg.blocks = blocks;
        seg.closed = true;
        return Ok(seg);
    }
    scan_blocks(&mut f, file_len, &mut seg)?;
    Ok(seg)
}

fn read_trailer_index(f: &mut File, file_len: u64) -> Option<Vec<BlockMeta>> {
    if file_len < HEADER_LEN + TRAILER_LEN + BLOCK_HEADER_LEN as u64 {
        return None;
    }
    f.seek(SeekFrom::Start(file_len - TRAILER_LEN)).ok()?;
    let mut t = [0u8; TRAILER_LEN as usize];
    f.read_exact(&mut t).ok()?;
    if &t[8..] != TRAILER_MAGIC {
        return None;
    }
    let at = le_i64(&t) as u64;
    let (meta, payload) = read_block_at(f, at, file_len).ok()?;
    if meta.kind != Kind::Index {
        return None;
    }
    parse_index(&payload, file_len)
}

/// The most one block may decompress to. A block holds a few seconds of data (a key block
/// of 10,000 hosts is a few MiB), while a crafted block of a few bytes can claim gigabytes:
/// the reader stops there instead of taking the memory.
pub const MAX_RAW: u64 = 128 << 20;

/// Decompresses a block's payload, bounded by [`MAX_RAW`].
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    decompress_within(payload, MAX_RAW)
}

fn decompress_within(payload: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("does not decompress: {e}");
    let decoder = zstd::stream::read::Decoder::with_buffer(payload).map_err(fail)?;
    let mut raw = Vec::new();
    decoder.take(limit + 1).read_to_end(&mut raw).map_err(fail)?;
    if raw.len() as u64 > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(raw)
}

/// Reads and checks the block at `offset`.
pub fn read_block_at(f: &mut File, offset: u64, file_len: u64) -> Result<(BlockMeta, Vec<u8>), String> {
    let mut h = [0u8; BLOCK_HEADER_LEN];
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    f.read_exact(&mut h)
        .map_err(|_| format!("block at offset {offset} is cut off"))?;
    let (meta, crc) =
        parse_header(&h, offset).ok_or_else(|| format!("bad block header at offset {offset}"))?;
    if offset + BLOCK_HEADER_LEN as u64 + u64::from(meta.len) > file_len {
        return Err(format!("block at offset {offset} is cut off"));
    }
    let mut payload = vec![0u8; meta.len as usize];
    f.read_exact(&mut payload)
        .map_err(|_| format!("block at offset {offset} is cut off"))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[..28]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Err(format!("block at offset {offset} fails its checksum"));
    }
    Ok((meta, payload))
}

/// Walks block headers from the segment header on; a bad one is skipped by searching for
/// the next block magic (reading the rest of the file only on that rare path).
fn scan_blocks(f: &mut File, file_len: u64, seg: &mut SegmentIndex) -> std::io::Result<()> {
    let mut offset = HEADER_LEN;
    let mut h = [0u8; BLOCK_HEADER_LEN];
    while offset + BLOCK_HEADER_LEN as u64 <= file_len {
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut h)?;
        match parse_header(&h, offset) {
            Some((meta, _)) if offset + BLOCK_HEADER_LEN as u64 + u64::from(meta.len) <= file_len => {
                let next = offset + BLOCK_HEADER_LEN as u64 + u64::from(meta.len);
                if meta.kind != Kind::Index {
                    seg.blocks.push(meta);
                }
                offset = next;
            }
            Some(_) => {
                seg.problems
                    .push(format!("last block (offset {offset}) is cut off"));
                return Ok(());
            }
            None => {
                seg.problems.push(format!(
                    "bad block header at offset {offset}: searching for the next block"
                ));
                match find_magic(f, offset + 1, file_len)? {
                    Some(next) => offset = next,
                    None => return Ok(()),
                }
            }
        }
    }
    if offset < file_len && file_len - offset != TRAILER_LEN {
        seg.problems
            .push(format!("{} stray bytes at the end", file_len - offset));
    }
    Ok(())
}

fn find_magic(f: &mut File, from: u64, file_len: u64) -> std::io::Result<Option<u64>> {
    f.seek(SeekFrom::Start(from))?;
    let mut rest = Vec::with_capacity((file_len - from) as usize);
    f.read_to_end(&mut rest)?;
    Ok(memchr::memmem::find(&rest, BLOCK_MAGIC).map(|i| from + i as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_that_claims_more_than_the_limit_is_refused_not_allocated() {
        let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        assert!(bomb.len() < 200, "{} bytes", bomb.len());
        let e = decompress_within(&bomb, 1000).unwrap_err();
        assert!(e.contains("more than 1000 bytes"), "{e}");
        assert_eq!(decompress_within(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert!(
            decompress(b"not zstd")
                .unwrap_err()
                .contains("does not decompress")
        );
    }
}
