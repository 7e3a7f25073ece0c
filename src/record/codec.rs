//! The byte-level codecs of a recording: varints, zigzag, and how one value of a series is
//! stored (a scaled-integer delta, or the raw bits when the value is not representable).
//!
//! Values are kept as integers at a fixed scale per unit ([`scale_of`]): deltas of small
//! integers are one or two bytes and compress well under zstd, where the XOR of two noisy
//! doubles stays six or seven (docs/record.md has the measurement).

use crate::model::Unit;

/// Appends `v` as a LEB128 varint.
pub fn put_uvar(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_ivar(out: &mut Vec<u8>, v: i64) {
    put_uvar(out, zigzag(v));
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvar(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A decoding error: the payload ended early or held an impossible value. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed block: {0}")]
pub struct Malformed(pub &'static str);

/// Reads what the `put_*` functions wrote.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    #[inline]
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        let b = *self.buf.get(self.pos).ok_or(Malformed("ends early"))?;
        self.pos += 1;
        Ok(b)
    }
    #[inline]
    pub fn uvar(&mut self) -> Result<u64, Malformed> {
        // Most varints of a block are one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.uvar_long()
    }

    fn uvar_long(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed("varint too long"))
    }
    #[inline]
    pub fn ivar(&mut self) -> Result<i64, Malformed> {
        self.uvar().map(unzigzag)
    }
    /// A count that must fit what is left of the buffer (each item takes a byte at least).
    #[inline]
    pub fn count(&mut self) -> Result<usize, Malformed> {
        let n = self.uvar()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(Malformed("count beyond the block"));
        }
        Ok(n as usize)
    }
    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.count()?;
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }
    pub fn u64_le(&mut self) -> Result<u64, Malformed> {
        let end = self.pos + 8;
        let b = self.buf.get(self.pos..end).ok_or(Malformed("ends early"))?;
        self.pos = end;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// How many steps per unit a value of this unit is stored with: 100 for percentages (0.01 %),
/// 1000 for loads, milliseconds (1 µs) and check metrics, 1 for bytes, counts, seconds and
/// rates. The
/// dashboard shows a tenth of these steps at most; integers are always exact.
pub fn scale_of(unit: Unit) -> u32 {
    match unit {
        Unit::Percent => 100,
        Unit::Load | Unit::Millis => 1000,
        Unit::Bool | Unit::Seconds | Unit::Bytes | Unit::BytesPerSec | Unit::Count => 1,
        // A check's own unit: whole numbers exactly, anything else to 0.001.
        Unit::Custom(_) => 1000,
    }
}

/// Largest scaled magnitude stored as an integer (doubles are exact integers up to 2^53).
const INT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The encoder's and decoder's memory of one series: the previous scaled value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prev(pub i64);

impl Prev {
    /// The memory of a series whose previous value was `v` at `scale`.
    pub fn of(v: f64, scale: u32) -> Prev {
        let q = (v * f64::from(scale)).round();
        Prev(if q.abs() < INT_LIMIT { q as i64 } else { 0 })
    }
}

/// Writes one value of a series with `scale` steps per unit. `lossless` keeps values that
/// are not whole steps exactly (their raw bits); otherwise they are rounded to a step.
/// Tag bit 0: zigzag delta of the scaled integer; tag bit 1: the raw bits follow.
pub fn put_value(out: &mut Vec<u8>, prev: &mut Prev, scale: u32, lossless: bool, v: f64) {
    let s = f64::from(scale);
    let q = (v * s).round();
    let whole = q.abs() < INT_LIMIT && (!lossless || q / s == v);
    if whole {
        let q = q as i64;
        put_uvar(out, zigzag(q.wrapping_sub(prev.0)) << 1);
        prev.0 = q;
    } else {
        out.push(1);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

#[inline]
pub fn get_value(c: &mut Cursor, prev: &mut Prev, scale: u32) -> Result<f64, Malformed> {
    let tag = c.uvar()?;
    if tag & 1 == 1 {
        if tag != 1 {
            return Err(Malformed("bad value tag"));
        }
        return Ok(f64::from_bits(c.u64_le()?));
    }
    let q = prev.0.wrapping_add(unzigzag(tag >> 1));
    prev.0 = q;
    Ok(q as f64 / f64::from(scale.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        let mut out = Vec::new();
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            put_uvar(&mut out, v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            put_ivar(&mut out, v);
        }
        let mut c = Cursor::new(&out);
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(c.uvar(), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(c.ivar(), Ok(v));
        }
        assert!(c.is_empty());
        assert!(c.u8().is_err());
    }

    #[test]
    fn values_round_trip_at_their_scale() {
        let mut out = Vec::new();
        let mut p = Prev::default();
        let vals = [12.34, 12.345_678, -3.0, 1e300, f64::MIN_POSITIVE, 0.0];
        for v in vals {
            put_value(&mut out, &mut p, 100, false, v);
        }
        for v in [1e15, 7.5, 2.0_f64.powi(60)] {
            put_value(&mut out, &mut p, 1, true, v);
        }
        let mut c = Cursor::new(&out);
        let mut q = Prev::default();
        let got: Vec<f64> = (0..9)
            .map(|_| get_value(&mut c, &mut q, 100).unwrap_or(f64::NAN))
            .collect();
        assert_eq!(got[0], 12.34);
        assert_eq!(got[1], 12.35, "rounded to the percent scale");
        assert_eq!(got[2], -3.0);
        assert_eq!(got[3], 1e300, "too large for an integer: raw bits");
        assert_eq!(got[4], 0.0);
        assert_eq!(got[5], 0.0);
        // The lossless scale-1 values were read at scale 100 above: re-read properly.
        let mut c = Cursor::new(&out);
        let mut q = Prev::default();
        for _ in 0..6 {
            get_value(&mut c, &mut q, 100).expect("value");
        }
        assert_eq!(get_value(&mut c, &mut q, 1), Ok(1e15));
        assert_eq!(
            get_value(&mut c, &mut q, 1),
            Ok(7.5),
            "not a whole step: kept exactly"
        );
        assert_eq!(get_value(&mut c, &mut q, 1), Ok(2.0_f64.powi(60)));
    }

    #[test]
    fn hostile_input_is_an_error() {
        let mut c = Cursor::new(&[0xff; 12]);
        assert!(c.uvar().is_err());
        let mut c = Cursor::new(&[5, 1]);
        assert!(c.bytes().is_err());
        let mut c = Cursor::new(&[3]);
        assert!(get_value(&mut c, &mut Prev::default(), 1).is_err());
    }
}
