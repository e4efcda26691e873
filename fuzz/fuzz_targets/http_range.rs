//! HTTP `Range` header parser: no panic, and every answer is well-formed
//! (ranges inside the file, at most MAX_RANGES, merged ranges disjoint).
#![no_main]

use bootlab_http::range::{MAX_RANGES, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len_bytes, header) = data.split_at(8);
    let mut len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
    // Mostly realistic sizes, sometimes huge ones.
    if len_bytes[7] & 0x80 == 0 {
        len %= 1 << 34;
    }
    if let Ok(Some(ranges)) = parse_range(header, len) {
        assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
        for r in &ranges {
            assert!(r.first <= r.last && r.last < len, "{r:?} outside {len}");
        }
        let mut sorted = ranges.clone();
        sorted.sort_by_key(|r| r.first);
        let merged = sorted.windows(2).any(|w| w[1].first <= w[0].last.saturating_add(1));
        assert!(!merged, "touching ranges left unmerged: {ranges:?}");
    }
});
