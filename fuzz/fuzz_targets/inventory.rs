//! lab.toml parser + validator: no panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match bootlab_inventory::parse(text, "fuzz.toml".as_ref()) {
            Ok(inv) => {
                // Derived views must not panic either.
                let _ = inv.hosts();
                let _ = inv.zones();
                let _ = inv.vm_specs();
                for node in &inv.nodes() {
                    let _ = inv.boot_profile(node);
                }
            }
            Err(diags) => {
                let _ = diags.to_string();
            }
        }
    }
});
