//! The `Range` request header (RFC 9110 §14.2), as a pure function.
//!
//! [`parse_range`] turns a header value and the representation's length into
//! the byte ranges to send. Overlapping or adjacent ranges are coalesced (so a
//! client cannot ask for the same bytes many times over), and the number of
//! ranges is capped at [`MAX_RANGES`].
//!
//! Outcomes, as bootlab answers them (nginx does the same):
//! - a unit other than `bytes`: the header is ignored (200, whole file);
//! - a syntax error, more than [`MAX_RANGES`] ranges, or no satisfiable
//!   range: 416 with `Content-Range: bytes */<len>`;
//! - otherwise 206 with one part, or `multipart/byteranges` for several.

/// Most ranges one request may ask for.
pub const MAX_RANGES: usize = 16;

/// One satisfiable byte range, both ends inclusive (`first <= last < len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub first: u64,
    /// Last byte offset (inclusive).
    pub last: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a satisfiable range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a `Range` header is answered with 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=<range-set>` syntax.
    #[error("malformed Range header")]
    Malformed,
    /// More than [`MAX_RANGES`] ranges.
    #[error("more than {MAX_RANGES} ranges")]
    TooMany,
    /// No range overlaps the representation.
    #[error("no satisfiable range")]
    Unsatisfiable,
}

/// The ranges `header` asks for in a representation of `len` bytes.
///
/// `Ok(None)`: the header does not apply (another range unit); send the whole
/// representation. `Ok(Some(ranges))`: at least one range, in the client's
/// order unless some overlapped (then sorted and merged).
pub fn parse_range(header: &[u8], len: u64) -> Result<Option<Vec<ByteRange>>, RangeError> {
    let text = std::str::from_utf8(header).map_err(|_| RangeError::Malformed)?;
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    let Some((unit, set)) = text.split_once('=') else {
        return Err(RangeError::Malformed);
    };
    if !unit.eq_ignore_ascii_case("bytes") {
        if unit.is_empty() || !unit.bytes().all(is_token_byte) {
            return Err(RangeError::Malformed);
        }
        return Ok(None);
    }
    let mut specs = 0usize;
    let mut ranges = Vec::new();
    for element in set.split(',') {
        let element = element.trim_matches(|c| c == ' ' || c == '\t');
        if element.is_empty() {
            // RFC 9110 §5.6.1: recipients accept (and ignore) empty elements.
            continue;
        }
        specs += 1;
        if specs > MAX_RANGES {
            return Err(RangeError::TooMany);
        }
        if let Some(range) = parse_spec(element, len)? {
            ranges.push(range);
        }
    }
    if specs == 0 {
        return Err(RangeError::Malformed);
    }
    if ranges.is_empty() {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(Some(coalesce(ranges)))
}

/// One `range-spec`: `Ok(None)` when it is valid but outside the representation.
fn parse_spec(spec: &str, len: u64) -> Result<Option<ByteRange>, RangeError> {
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    if first.is_empty() {
        // suffix-range: the last N bytes.
        let suffix = parse_digits(last)?;
        if suffix == 0 || len == 0 {
            return Ok(None);
        }
        return Ok(Some(ByteRange {
            first: len - suffix.min(len),
            last: len - 1,
        }));
    }
    let first = parse_digits(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(parse_digits(last)?)
    };
    if let Some(last) = last {
        if last < first {
            return Err(RangeError::Malformed);
        }
    }
    if first >= len {
        return Ok(None);
    }
    let last = last.map_or(len - 1, |l| l.min(len - 1));
    Ok(Some(ByteRange { first, last }))
}

/// 1*DIGIT, saturating (a huge position is still a position).
fn parse_digits(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    Ok(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Keeps the client's order when no two ranges overlap or touch; otherwise
/// sorts and merges them.
fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    if ranges.len() < 2 {
        return ranges;
    }
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| r.first);
    let touching = sorted
        .windows(2)
        .any(|w| w[1].first <= w[0].last.saturating_add(1));
    if !touching {
        return ranges;
    }
    ranges.clear();
    for r in sorted {
        match ranges.last_mut() {
            Some(prev) if r.first <= prev.last.saturating_add(1) => {
                prev.last = prev.last.max(r.last);
            }
            _ => ranges.push(r),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    fn ok(h: &str, len: u64) -> Vec<ByteRange> {
        parse_range(h.as_bytes(), len).unwrap().unwrap()
    }

    #[test]
    fn single_forms() {
        assert_eq!(ok("bytes=0-99", 1000), vec![r(0, 99)]);
        assert_eq!(ok("bytes=900-", 1000), vec![r(900, 999)]);
        assert_eq!(ok("bytes=-100", 1000), vec![r(900, 999)]);
        assert_eq!(ok("bytes=-5000", 1000), vec![r(0, 999)]);
        assert_eq!(ok("bytes=990-5000", 1000), vec![r(990, 999)]);
        assert_eq!(ok("BYTES=0-0", 1), vec![r(0, 0)]);
        assert_eq!(ok("bytes=0-99999999999999999999999", 10), vec![r(0, 9)]);
    }

    #[test]
    fn multi_and_coalescing() {
        assert_eq!(ok("bytes=0-1, 5-6", 10), vec![r(0, 1), r(5, 6)]);
        assert_eq!(ok("bytes=5-6,0-1", 10), vec![r(5, 6), r(0, 1)]);
        assert_eq!(ok("bytes=0-4,3-8", 10), vec![r(0, 8)]);
        assert_eq!(ok("bytes=5-6,0-4", 10), vec![r(0, 6)]);
        assert_eq!(ok("bytes=0-1,,4-5", 10), vec![r(0, 1), r(4, 5)]);
        // an unsatisfiable member is dropped when another is satisfiable
        assert_eq!(ok("bytes=0-1,50-60", 10), vec![r(0, 1)]);
    }

    #[test]
    fn errors() {
        let e = |h: &str, len| parse_range(h.as_bytes(), len).unwrap_err();
        assert_eq!(e("bytes=", 10), RangeError::Malformed);
        assert_eq!(e("bytes=,", 10), RangeError::Malformed);
        assert_eq!(e("bytes=a-b", 10), RangeError::Malformed);
        assert_eq!(e("bytes=5-1", 10), RangeError::Malformed);
        assert_eq!(e("bytes=-", 10), RangeError::Malformed);
        assert_eq!(e("bytes=1", 10), RangeError::Malformed);
        assert_eq!(e("bytes=+1-2", 10), RangeError::Malformed);
        assert_eq!(e("0-1", 10), RangeError::Malformed);
        assert_eq!(e("=0-1", 10), RangeError::Malformed);
        assert_eq!(e("bytes=10-", 10), RangeError::Unsatisfiable);
        assert_eq!(e("bytes=-0", 10), RangeError::Unsatisfiable);
        assert_eq!(e("bytes=0-0", 0), RangeError::Unsatisfiable);
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(e(&many, 10), RangeError::TooMany);
        assert_eq!(parse_range(b"bytes=\xff-1", 10), Err(RangeError::Malformed));
    }

    #[test]
    fn other_units_are_ignored() {
        assert_eq!(parse_range(b"items=0-1", 10), Ok(None));
    }
}
