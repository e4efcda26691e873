//! The admin API's parsers, both sides: asset paths as the server decodes
//! and checks them (percent-decoding, then component checks; encoding a
//! valid path and decoding it again gives it back), the client's HTTP
//! response heads, the JSON documents it reads, /proc/mounts lines, and
//! the host's `qemu+ssh://` URIs. No panic on any input.
#![no_main]

use bootlab_admin::{client, facts, store, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if store::check_path(&text).is_ok() {
        let url = wire::asset_url_path(&text);
        let back = percent_encoding::percent_decode_str(&url[wire::PATH_ASSETS.len()..])
            .decode_utf8()
            .expect("encoded paths decode");
        assert_eq!(back, text, "asset paths round-trip");
    }
    if let Ok(decoded) = percent_encoding::percent_decode(data).decode_utf8() {
        if let Ok(segs) = store::check_path(&decoded) {
            assert!(segs.iter().all(|s| *s != ".." && *s != "." && !s.is_empty()));
        }
    }
    if let Ok(Some((_, _, used))) = client::parse_response_head(data) {
        assert!(used <= data.len());
    }
    let _ = serde_json::from_slice::<wire::State>(data);
    let _ = serde_json::from_slice::<wire::ApiError>(data);
    let _ = serde_json::from_slice::<wire::InventoryApplied>(data);
    let _ = facts::mount_of(&text, std::path::Path::new("/var/lib/bootlab/assets"));
    let _ = bootlab_bootlab::live::ssh_target(&text);
});
