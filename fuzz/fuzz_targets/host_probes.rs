//! The host tool's parsers: /proc/net/route, /proc/net/{udp,tcp}, a libvirt
//! network's XML, a domain's stored digest, modules.dep, ldd output. No
//! panic on any input.
#![no_main]

use bootlab_bootlab::{appliance, procnet, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = procnet::parse_routes(&text);
    let _ = procnet::parse_sockets(&text, "udp");
    let _ = procnet::parse_sockets(&text, "tcp");
    let _ = procnet::parse_network_facts(&text);
    let _ = xml::stored_digest(&text);
    let dep = appliance::parse_modules_dep(&text);
    let _ = appliance::resolve_modules(&dep, &["virtio_net", "nf_tables"]);
    let _ = appliance::parse_ldd(&text);
});
