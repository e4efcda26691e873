//! One test per validation rule: each asserts the field path, the line the
//! diagnostic points at, and the gist of the message.

use std::path::Path;

mod common;

use bootlab_inventory::{Diagnostic, parse};
use common::{edit_of, errors, line_of, list, the_error};

const BASE: &str = r#"[lab]
name = "t"
domain = "lab.test"

[network]
cidr = "10.9.0.0/24"
mode = "nat"
gateway = "10.9.0.1"
host_ip = "10.9.0.1"

[services]
ip = "10.9.0.254"
mac = "52:54:00:09:00:fe"

[profiles.p]
kernel = "k"
initrd = ["i"]
args = "x={{ vars.x }} n={{ node.name }}"

[roles.r]
profile = "p"
memory = "1GiB"
disks = ["2GiB", "3GiB"]
vars = { x = "1" }

[[nodes]]
name = "a"
role = "r"
mac = "52:54:00:09:00:0a"
ip = "10.9.0.10"

[[nodes]]
name = "b"
role = "r"
ip = "10.9.0.11"

[egress]
allow_cidrs = []
"#;

/// BASE with `from` replaced by `to` (which must occur exactly once).
fn edit(from: &str, to: &str) -> String {
    edit_of(BASE, from, to)
}

/// Asserts exactly one error, at `path`, on the line containing `line_needle`,
/// whose message contains `msg`. Returns it.
#[track_caller]
fn one_error(text: &str, path: &str, line_needle: &str, msg: &str) -> Diagnostic {
    let e = the_error(text, path, msg);
    assert_eq!(e.line, line_of(text, line_needle), "{e}");
    e
}

#[test]
fn base_is_valid() {
    let inv = parse(BASE, Path::new("lab.toml")).unwrap();
    assert_eq!(inv.nodes().len(), 2);
    assert_eq!(
        inv.nodes()[1].mac.to_string(),
        "52:54:0a:09:00:0b",
        "derived from the IP"
    );
    assert!(inv.nodes()[1].mac_derived);
}

#[test]
fn duplicate_node_name() {
    let t = edit("name = \"b\"", "name = \"a\"");
    let e = one_error(
        &t,
        "nodes[1].name",
        "name = \"a\"\nrole = \"r\"\nip",
        "already used by nodes[0].name",
    );
    let _ = e;
}

#[test]
fn node_name_equal_to_services_name() {
    let t = edit("name = \"b\"", "name = \"services\"");
    one_error(
        &t,
        "nodes[1].name",
        "name = \"services\"",
        "already used by services.name",
    );
}

#[test]
fn duplicate_explicit_mac() {
    let t = edit(
        "name = \"b\"\nrole = \"r\"\n",
        "name = \"b\"\nrole = \"r\"\nmac = \"52:54:00:09:00:0A\"\n",
    );
    one_error(
        &t,
        "nodes[1].mac",
        "mac = \"52:54:00:09:00:0A\"",
        "already used by nodes[0].mac",
    );
}

#[test]
fn duplicate_derived_mac() {
    // Node a's explicit MAC equals the MAC derived from node b's IP.
    let t = edit("mac = \"52:54:00:09:00:0a\"", "mac = \"52-54-0A-09-00-0B\"");
    let e = one_error(
        &t,
        "nodes[1].ip",
        "ip = \"10.9.0.11\"",
        "already used by nodes[0].mac",
    );
    assert!(e.message.contains("derived"), "{e}");
}

#[test]
fn duplicate_ip() {
    let t = edit(
        "ip = \"10.9.0.11\"",
        "ip = \"10.9.0.10\"\nmac = \"52:54:00:09:00:0b\"",
    );
    let e = one_error(
        &t,
        "nodes[1].ip",
        "ip = \"10.9.0.10\"\nmac",
        "already used by nodes[0].ip",
    );
    let _ = e;
}

#[test]
fn ip_outside_cidr() {
    let t = edit("ip = \"10.9.0.11\"", "ip = \"10.8.0.11\"");
    one_error(
        &t,
        "nodes[1].ip",
        "10.8.0.11",
        "outside network.cidr 10.9.0.0/24",
    );
}

#[test]
fn broadcast_address_is_not_a_host() {
    let t = edit("ip = \"10.9.0.11\"", "ip = \"10.9.0.255\"");
    one_error(&t, "nodes[1].ip", "10.9.0.255", "broadcast address");
}

#[test]
fn not_an_ip() {
    let t = edit("ip = \"10.9.0.11\"", "ip = \"10.9.0.x\"");
    one_error(&t, "nodes[1].ip", "10.9.0.x", "not an IPv4 address");
}

#[test]
fn node_on_the_gateway() {
    let t = edit("ip = \"10.9.0.11\"", "ip = \"10.9.0.1\"");
    one_error(
        &t,
        "nodes[1].ip",
        "ip = \"10.9.0.1\"\n\n[egress]",
        "network.gateway",
    );
}

#[test]
fn node_on_the_services_ip() {
    let t = edit("ip = \"10.9.0.11\"", "ip = \"10.9.0.254\"");
    one_error(
        &t,
        "nodes[1].ip",
        "ip = \"10.9.0.254\"\n\n[egress]",
        "services.ip",
    );
}

#[test]
fn gateway_is_services_only_in_isolated_mode() {
    let t = edit(
        "gateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "gateway = \"10.9.0.254\"\nhost_ip = \"10.9.0.254\"",
    );
    let errs = errors(&t);
    let gw = errs
        .iter()
        .find(|e| e.path.to_string() == "network.gateway")
        .expect("gateway error");
    assert!(gw.message.contains("only in isolated mode"), "{gw}");
    assert_eq!(gw.line, line_of(&t, "gateway = "));
    assert!(
        errs.iter().any(|e| e.path.to_string() == "network.host_ip"),
        "{}",
        list(&errs)
    );
}

#[test]
fn isolated_mode_requires_uplink() {
    let t = edit(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "mode = \"isolated\"\ngateway = \"10.9.0.254\"",
    );
    one_error(
        &t,
        "services",
        "[services]",
        "isolated mode needs services.uplink",
    );
    let ok = t.replace(
        "mac = \"52:54:00:09:00:fe\"",
        "mac = \"52:54:00:09:00:fe\"\nuplink = { network = \"default\", mac = \"52:54:00:09:01:fe\" }",
    );
    parse(&ok, Path::new("lab.toml")).unwrap();
}

#[test]
fn isolated_mode_gateway_must_be_services() {
    let t = edit(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "mode = \"isolated\"\ngateway = \"10.9.0.1\"",
    )
    .replace(
        "mac = \"52:54:00:09:00:fe\"",
        "mac = \"52:54:00:09:00:fe\"\nuplink = { network = \"default\", mac = \"52:54:00:09:01:fe\" }",
    );
    one_error(
        &t,
        "network.gateway",
        "gateway = ",
        "gateway differs from services.ip",
    );
}

#[test]
fn nat_mode_host_ip_equals_gateway() {
    let t = edit("host_ip = \"10.9.0.1\"", "host_ip = \"10.9.0.2\"");
    one_error(&t, "network.host_ip", "host_ip = ", "differs from gateway");
}

#[test]
fn nat_mode_needs_host_ip() {
    let t = edit("host_ip = \"10.9.0.1\"\n", "");
    one_error(&t, "network", "[network]", "needs network.host_ip");
}

#[test]
fn host_ip_equal_to_services_ip() {
    let t = edit(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "mode = \"bridge\"\nbridge = \"br0\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.254\"",
    );
    one_error(
        &t,
        "network.host_ip",
        "host_ip = ",
        "host_ip equals services.ip",
    );
}

#[test]
fn pool_overlapping_a_reservation() {
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\npool = { start = \"10.9.0.5\", end = \"10.9.0.10\" }\n",
    );
    let e = one_error(
        &t,
        "network.pool",
        "pool = ",
        "contains nodes[0].ip 10.9.0.10",
    );
    let _ = e;
}

#[test]
fn pool_overlapping_gateway_and_services() {
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\npool = { start = \"10.9.0.1\", end = \"10.9.0.9\" }\n",
    );
    let errs = errors(&t);
    assert!(
        errs.iter().any(|e| e.message.contains("network.gateway")),
        "{}",
        list(&errs)
    );
    assert!(
        errs.iter().any(|e| e.message.contains("network.host_ip")),
        "{}",
        list(&errs)
    );
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\npool = { start = \"10.9.0.250\", end = \"10.9.0.254\" }\n",
    );
    one_error(&t, "network.pool", "pool = ", "services.ip");
}

#[test]
fn pool_in_proxy_dhcp_mode() {
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\ndhcp = \"proxy\"\npool = { start = \"10.9.0.150\", end = \"10.9.0.160\" }\n",
    );
    one_error(&t, "network.pool", "pool = ", "hands out no addresses");
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\ndhcp = \"relay\"\n",
    );
    one_error(&t, "network.dhcp", "dhcp = ", "relay");
}

#[test]
fn pool_end_before_start() {
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\npool = { start = \"10.9.0.150\", end = \"10.9.0.100\" }\n",
    );
    one_error(&t, "network.pool.end", "pool = ", "comes before start");
}

#[test]
fn host_name_label_syntax() {
    for bad in [
        "bad_name",
        "-lead",
        "trail-",
        "has.dot",
        "sp ace",
        &"x".repeat(64),
    ] {
        let t = edit("name = \"b\"", &format!("name = \"{bad}\""));
        one_error(
            &t,
            "nodes[1].name",
            &format!("name = \"{bad}\""),
            "not a valid host name",
        );
    }
}

#[test]
fn lab_name_and_domain_syntax() {
    let t = edit("name = \"t\"", "name = \"t_t\"");
    one_error(&t, "lab.name", "name = \"t_t\"", "not a valid DNS label");
    let t = edit("domain = \"lab.test\"", "domain = \"lab..test\"");
    one_error(&t, "lab.domain", "domain = ", "not a valid domain name");
}

#[test]
fn bridge_name_longer_than_15_bytes() {
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\nbridge = \"virbr-much-too-long\"\n",
    );
    one_error(&t, "network.bridge", "bridge = ", "at most 15");
}

#[test]
fn unknown_role() {
    let t = edit("name = \"b\"\nrole = \"r\"", "name = \"b\"\nrole = \"rr\"");
    one_error(&t, "nodes[1].role", "role = \"rr\"", "unknown role \"rr\"");
}

#[test]
fn unknown_profile_on_role_and_node() {
    let t = edit("profile = \"p\"", "profile = \"nope\"");
    let errs = errors(&t);
    assert!(
        errs.iter().any(|e| e.path.to_string() == "roles.r.profile"
            && e.line == line_of(&t, "profile = \"nope\"")),
        "{}",
        list(&errs)
    );
    let t = edit(
        "name = \"b\"\nrole = \"r\"",
        "name = \"b\"\nrole = \"r\"\nprofile = \"other\"",
    );
    one_error(
        &t,
        "nodes[1].profile",
        "profile = \"other\"",
        "unknown profile \"other\"",
    );
}

#[test]
fn unknown_loader() {
    let t = edit("kernel = \"k\"", "loader = \"syslinux\"\nkernel = \"k\"");
    let e = one_error(
        &t,
        "profiles.p.loader",
        "loader = ",
        "unknown value \"syslinux\"",
    );
    assert!(e.help.contains("ipxe, grub"), "{e}");
}

#[test]
fn unknown_firmware_and_mode() {
    let t = edit(
        "name = \"b\"\nrole = \"r\"",
        "name = \"b\"\nrole = \"r\"\nfirmware = \"coreboot\"",
    );
    one_error(
        &t,
        "nodes[1].firmware",
        "firmware = ",
        "unknown value \"coreboot\"",
    );
    let t = edit("mode = \"nat\"", "mode = \"routed\"");
    one_error(&t, "network.mode", "mode = ", "unknown value \"routed\"");
}

#[test]
fn sizes() {
    let t = edit("memory = \"1GiB\"", "memory = \"16 gigs\"");
    one_error(&t, "roles.r.memory", "memory = ", "unknown size unit");
    let t = edit(
        "disks = [\"2GiB\", \"3GiB\"]",
        "disks = [\"2GiB\", \"3XB\"]",
    );
    one_error(&t, "roles.r.disks[1]", "disks = ", "unknown size unit");
    let t = edit(
        "name = \"b\"\nrole = \"r\"",
        "name = \"b\"\nrole = \"r\"\nmemory = \"512MiB\"",
    );
    let inv = parse(&t, Path::new("lab.toml")).unwrap();
    assert_eq!(inv.nodes()[1].memory, 512 << 20);
    assert_eq!(inv.nodes()[0].memory, 1 << 30, "role default");
}

#[test]
fn durations() {
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\nlease = \"12 parsecs\"\n",
    );
    one_error(&t, "network.lease", "lease = ", "not a duration");
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\nlease = \"30s\"\n",
    );
    one_error(&t, "network.lease", "lease = ", "shorter than a minute");
}

#[test]
fn mac_syntax_and_normalisation() {
    let t = edit("mac = \"52:54:00:09:00:0a\"", "mac = \"52:54:00:09:00:zz\"");
    one_error(&t, "nodes[0].mac", "52:54:00:09:00:zz", "not a MAC address");
    let t = edit("mac = \"52:54:00:09:00:0a\"", "mac = \"53:54:00:09:00:0a\"");
    one_error(&t, "nodes[0].mac", "53:54", "multicast");
    let t = edit("mac = \"52:54:00:09:00:0a\"", "mac = \"52-54-00-09-00-0A\"");
    let inv = parse(&t, Path::new("lab.toml")).unwrap();
    assert_eq!(inv.nodes()[0].mac.to_string(), "52:54:00:09:00:0a");
}

#[test]
fn egress_host_that_names_no_host() {
    let t = edit(
        "allow_cidrs = []",
        "allow_hosts = [\"services\", \"ghost\"]\nallow_cidrs = []",
    );
    one_error(
        &t,
        "egress.allow_hosts[1]",
        "allow_hosts",
        "\"ghost\" names no host",
    );
}

#[test]
fn allow_domains_rejected_in_nat_mode() {
    let t = edit(
        "allow_cidrs = []",
        "allow_cidrs = []\nallow_domains = [\"quay.io\"]",
    );
    let e = one_error(&t, "egress.allow_domains", "allow_domains", "in nat mode");
    assert!(e.help.contains("isolated"), "{e}");
}

#[test]
fn allow_cidrs_syntax() {
    let t = edit(
        "allow_cidrs = []",
        "allow_cidrs = [\"203.0.113.7/24\", \"nope\"]",
    );
    let errs = errors(&t);
    assert_eq!(errs.len(), 2, "{}", list(&errs));
    assert_eq!(errs[0].path.to_string(), "egress.allow_cidrs[0]");
    assert_eq!(errs[1].path.to_string(), "egress.allow_cidrs[1]");
}

#[test]
fn dns_record_types_and_values() {
    let rec = |r: &str| {
        edit(
            "[egress]",
            &format!("[dns]\nrecords = [\n  {r},\n]\n\n[egress]"),
        )
    };
    let t = rec("{ name = \"api\", type = \"NAPTR\", value = \"x\" }");
    one_error(&t, "dns.records[0].type", "NAPTR", "unknown record type");
    let t = rec("{ name = \"api\", type = \"A\", value = \"10.9.0.300\" }");
    one_error(
        &t,
        "dns.records[0].value",
        "10.9.0.300",
        "not an IPv4 address",
    );
    let t = rec("{ name = \"api\", type = \"AAAA\", value = \"10.9.0.3\" }");
    one_error(&t, "dns.records[0].value", "AAAA", "not an IPv6 address");
    let t = rec("{ name = \"_etcd._tcp\", type = \"SRV\", value = \"0 10 2380\" }");
    one_error(&t, "dns.records[0].value", "SRV", "needs 4 fields");
    let t = rec("{ name = \"mx\", type = \"MX\", value = \"ten mail\" }");
    one_error(&t, "dns.records[0].value", "MX", "not a number");
    let t = rec("{ name = \"bad_.label-\", type = \"A\", value = \"10.9.0.3\" }");
    one_error(&t, "dns.records[0].name", "bad_.label-", "record name");
    let t = rec("{ name = \"x.example.org.\", type = \"A\", value = \"10.9.0.3\" }");
    one_error(
        &t,
        "dns.records[0].name",
        "example.org",
        "outside the lab zone",
    );
    let t = rec("{ name = \"a\", type = \"CNAME\", value = \"b\" }");
    one_error(&t, "dns.records[0].name", "CNAME", "a CNAME must be alone");
    let t = rec("{ name = \"txt\", type = \"TXT\", value = \"\\\"unterminated\" }");
    one_error(&t, "dns.records[0].value", "TXT", "unterminated");
    let ok = rec(
        "{ name = \"*.apps\", type = \"A\", value = \"10.9.0.254\", ttl = 60 },\n  { name = \"_etcd._tcp\", type = \"SRV\", value = \"0 10 2380 a\" },\n  { name = \"www\", type = \"CNAME\", value = \"a\" },\n  { name = \"@\", type = \"TXT\", value = \"\\\"v=1\\\" \\\"k=2\\\"\" },\n  { name = \"@\", type = \"MX\", value = \"10 a\" }",
    );
    let inv = parse(&ok, Path::new("lab.toml")).unwrap();
    assert_eq!(inv.dns_records().len(), 5);
}

#[test]
fn template_syntax_and_unknown_variables() {
    let t = edit(
        "args = \"x={{ vars.x }} n={{ node.name }}\"",
        "args = \"x={{ vars.x \"",
    );
    one_error(&t, "profiles.p.args", "args = ", "template syntax error");
    let t = edit(
        "args = \"x={{ vars.x }} n={{ node.name }}\"",
        "args = \"x={{ node.colour }}\"",
    );
    one_error(
        &t,
        "profiles.p.args",
        "args = ",
        "unknown variable node.colour",
    );
    let t = edit(
        "args = \"x={{ vars.x }} n={{ node.name }}\"",
        "args = \"x={{ flavour }}\"",
    );
    one_error(&t, "profiles.p.args", "args = ", "unknown variable flavour");
    // A var neither the node nor its role sets.
    let t = edit(
        "args = \"x={{ vars.x }} n={{ node.name }}\"",
        "args = \"x={{ vars.x }} y={{ vars.y }}\"",
    );
    // One error for the template, naming both nodes (not one per node).
    let errs = errors(&t);
    assert_eq!(errs.len(), 1, "one error for both nodes:\n{}", list(&errs));
    assert_eq!(errs[0].path.to_string(), "nodes[0]");
    assert_eq!(errs[0].line, line_of(&t, "[[nodes]]"));
    assert!(errs[0].message.contains("vars.y"), "{}", errs[0]);
    assert!(
        errs[0].message.contains("nodes a, b"),
        "names both nodes: {}",
        errs[0]
    );
}

#[test]
fn asset_paths_stay_inside_the_assets_dir() {
    let t = edit("kernel = \"k\"", "kernel = \"../../etc/shadow\"");
    one_error(
        &t,
        "profiles.p.kernel",
        "kernel = ",
        "relative path inside services.assets_dir",
    );
    let t = edit("initrd = [\"i\"]", "initrd = [\"/boot/initrd\"]");
    one_error(&t, "profiles.p.initrd[0]", "initrd = ", "relative path");
}

#[test]
fn cidr_with_host_bits() {
    let t = edit("cidr = \"10.9.0.0/24\"", "cidr = \"10.9.0.5/24\"");
    let e = one_error(&t, "network.cidr", "cidr = ", "host bits");
    assert!(e.help.contains("10.9.0.0/24"), "{e}");
}

#[test]
fn upstream_dns_must_not_be_ourselves() {
    let t = edit(
        "host_ip = \"10.9.0.1\"\n",
        "host_ip = \"10.9.0.1\"\nupstream_dns = [\"10.9.0.254\"]\n",
    );
    one_error(&t, "network.upstream_dns", "upstream_dns", "would loop");
}

#[test]
fn install_method() {
    let t = edit(
        "mac = \"52:54:00:09:00:fe\"",
        "mac = \"52:54:00:09:00:fe\"\n\n[services.install]\nmethod = \"kickstart\"",
    );
    one_error(&t, "services.install.method", "method = ", "needs iso");
    let t = edit(
        "mac = \"52:54:00:09:00:fe\"",
        "mac = \"52:54:00:09:00:fe\"\n\n[services.install]\nmethod = \"pxe\"",
    );
    one_error(
        &t,
        "services.install.method",
        "method = ",
        "unknown install method",
    );
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    // Top-level table.
    let t = edit("[egress]", "[extras]\nx = 1\n\n[egress]");
    let e = one_error(&t, "extras", "[extras]", "unknown key `extras`");
    assert!(e.help.contains("expected"), "{e}");
    // A key in a table.
    let t = edit("cidr = ", "cidrr = \"1\"\ncidr = ");
    one_error(&t, "network.cidrr", "cidrr", "unknown key `cidrr`");
    // A node.
    let t = edit("name = \"b\"", "name = \"b\"\nmacc = \"x\"");
    one_error(&t, "nodes[1].macc", "macc", "unknown key `macc`");
    // An inline table.
    let t = edit(
        "mac = \"52:54:00:09:00:fe\"",
        "mac = \"52:54:00:09:00:fe\"\nlisten = { dns = \"127.0.0.1:53\", dhcpp = \"x\" }",
    );
    let e = one_error(
        &t,
        "services.listen.dhcpp",
        "listen = ",
        "unknown key `dhcpp`",
    );
    assert_eq!(
        e.column,
        line_text(&t, "listen = ").find("dhcpp").unwrap() + 1
    );
    // [services.install]
    let t = edit(
        "mac = \"52:54:00:09:00:fe\"",
        "mac = \"52:54:00:09:00:fe\"\n\n[services.install]\nmethod = \"appliance\"\nisoo = \"x\"",
    );
    one_error(&t, "services.install.isoo", "isoo", "unknown key `isoo`");
}

fn line_text<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap()
}

#[test]
fn type_errors_are_located() {
    let t = edit(
        "name = \"b\"\nrole = \"r\"",
        "name = \"b\"\nrole = \"r\"\nvcpus = \"four\"",
    );
    let errs = errors(&t);
    assert_eq!(errs.len(), 1, "{}", list(&errs));
    assert_eq!(errs[0].line, line_of(&t, "vcpus"));
    assert_eq!(errs[0].path.to_string(), "nodes[1].vcpus");
}

#[test]
fn all_errors_are_reported_at_once_in_file_order() {
    let t = BASE
        .replace("name = \"t\"", "name = \"t_t\"")
        .replace("memory = \"1GiB\"", "memory = \"lots\"")
        .replace("ip = \"10.9.0.11\"", "ip = \"10.8.0.11\"");
    let errs = errors(&t);
    let paths: Vec<String> = errs.iter().map(|e| e.path.to_string()).collect();
    assert_eq!(
        paths,
        ["lab.name", "roles.r.memory", "nodes[1].ip"],
        "{}",
        list(&errs)
    );
    let text = bootlab_inventory::Diagnostics(errs).to_string();
    assert!(text.contains("lab.toml:2:"), "{text}");
    assert!(text.ends_with("3 errors in lab.toml"), "{text}");
}

#[test]
fn a_span_starting_on_a_crlf_line_end_is_reported_not_a_panic() {
    // Found by the inventory fuzz target: a diagnostic whose span starts on
    // the '\r' of a CRLF line end (the source line shown is trimmed of it).
    let text = include_str!("../../../fuzz/corpus/inventory/seed-regress-cr-span.toml");
    if let Err(diags) = bootlab_inventory::parse(text, "lab.toml".as_ref()) {
        assert!(!diags.to_string().is_empty());
    }
}
