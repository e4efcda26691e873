//! `nft -j list table` parser and the listing normalisers of the firewall
//! crate: no panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(state) = bootlab_firewall::parse_table_listing(text) {
            let _ = state.set(bootlab_firewall::LEARNED_SET);
            let _ = state.counter("lab_egress_denied");
        }
        let stripped = bootlab_firewall::strip_state(text);
        let _ = bootlab_firewall::render::same_objects(text, &stripped);
    }
});
