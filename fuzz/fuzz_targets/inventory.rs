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
                let _ = inv.egress_hosts();
                let _ = inv.missing_assets(std::path::Path::new("/nonexistent"));
                for w in inv.warnings() {
                    let _ = w.render(false);
                }
                // Every node's scripts render (the daemon refuses otherwise).
                if let Err(e) = bootlab_boot::BootScripts::render(&inv) {
                    panic!("a valid inventory whose scripts do not render: {e}");
                }
            }
            Err(diags) => {
                let _ = diags.to_string();
            }
        }
    }
});
