//! The host tool's parsers: /proc/net/route, /proc/net/{udp,tcp}, a libvirt
//! network's XML, a domain's stored digest, the fields `plan` compares in a
//! domain's and a network's XML, modules.dep, ldd output,
//! os-release and kernel release ordering. No panic on any input.
#![no_main]

use bootlab_bootlab::{appliance, diff, host, procnet, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = procnet::parse_routes(&text);
    let _ = procnet::parse_sockets(&text, "udp");
    let _ = procnet::parse_sockets(&text, "tcp");
    let _ = procnet::parse_network_facts(&text);
    let _ = xml::stored_digest(&text);
    let d = diff::domain_fields(&text);
    let n = diff::network_fields(&text);
    let _ = diff::diff(&d, &n);
    let dep = appliance::parse_modules_dep(&text);
    let _ = appliance::resolve_modules(&dep, &["virtio_net", "nf_tables"]);
    let _ = appliance::parse_ldd(&text);
    let distro = host::Distro::parse(&text);
    let _ = distro.fix(host::Need::Busybox);
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (a, b) = text.split_at(mid);
    let _ = host::version_cmp(a, b);
});
