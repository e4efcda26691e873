//! Balancers, NTP, drain, OKD warnings, missing boot files, and the
//! diagnostics' presentation (caret snippets, "did you mean", types in the
//! user's words, names as written, sizes as virt-install writes them).

use std::path::Path;

mod common;

use bootlab_inventory::{Diagnostic, HealthCheck, Inventory, Severity, parse};
use common::{edit_of, the_error};

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

[dns]
records = [
  { name = "api", type = "A", value = "10.9.0.254" },
]

[profiles.p]
kernel = "k"
initrd = ["i"]
args = "ign={{ assets }}/ign/{{ vars.x }}.ign"

[roles.master]
profile = "p"
vars = { x = "master" }

[roles.worker]
profile = "p"
vars = { x = "worker" }

[[nodes]]
name = "bootstrap"
profile = "p"
vars = { x = "bootstrap" }
ip = "10.9.0.10"

[[nodes]]
name = "m0"
role = "master"
ip = "10.9.0.20"

[[nodes]]
name = "m1"
role = "master"
ip = "10.9.0.21"

[[nodes]]
name = "w0"
role = "worker"
ip = "10.9.0.30"

[[balancers]]
name = "api"
port = 6443
backends = ["bootstrap", "master"]
check = { kind = "https", path = "/readyz", status = 200 }
"#;

fn edit(from: &str, to: &str) -> String {
    edit_of(BASE, from, to)
}

fn ok(text: &str) -> Inventory {
    parse(text, Path::new("lab.toml")).unwrap_or_else(|d| panic!("{d}"))
}

#[track_caller]
fn one_error(text: &str, path: &str, msg: &str) -> Diagnostic {
    the_error(text, path, msg)
}

#[test]
fn balancer_backends_resolve_roles_and_nodes_with_defaults() {
    let inv = ok(BASE);
    let b = &inv.balancers()[0];
    assert_eq!(b.listen.to_string(), "10.9.0.254:6443");
    let got: Vec<String> = b.backends.iter().map(|x| x.addr.to_string()).collect();
    assert_eq!(got, ["10.9.0.10:6443", "10.9.0.20:6443", "10.9.0.21:6443"]);
    assert_eq!(
        b.check,
        HealthCheck::Https {
            path: "/readyz".into(),
            status: 200
        }
    );
    assert_eq!(b.interval.as_secs(), 5);
    assert_eq!((b.rise, b.fall), (2, 3));
    assert!(inv.ntp().enable, "ntp is on by default");
    assert_eq!(inv.services().listen.ntp.port(), 123);
}

#[test]
fn a_name_that_is_both_role_and_node_means_the_union() {
    let t = edit("name = \"w0\"", "name = \"master\"");
    let t = t.replace(
        "backends = [\"bootstrap\", \"master\"]",
        "backends = [\"master\"]",
    );
    let inv = ok(&t);
    let names: Vec<&str> = inv.balancers()[0]
        .backends
        .iter()
        .map(|b| b.node.as_str())
        .collect();
    assert_eq!(names, ["m0", "m1", "master"]);
}

#[test]
fn unknown_backend_is_located_with_did_you_mean() {
    let t = edit(
        "backends = [\"bootstrap\", \"master\"]",
        "backends = [\"bootstrap\", \"mastr\"]",
    );
    let e = one_error(&t, "balancers[0].backends[1]", "neither a role nor a node");
    assert!(e.help.contains("\"master\""), "{e}");
    assert_eq!(e.line, t[..t.find("backends").unwrap()].lines().count() + 1);
}

#[test]
fn balancer_ports_may_not_clash() {
    let t =
        format!("{BASE}\n[[balancers]]\nname = \"api2\"\nport = 6443\nbackends = [\"worker\"]\n");
    one_error(
        &t,
        "balancers[1].port",
        "already the address of balancers[0]",
    );
    let t =
        format!("{BASE}\n[[balancers]]\nname = \"web\"\nport = 8080\nbackends = [\"worker\"]\n");
    one_error(&t, "balancers[1].port", "bootlabd's services.listen.http");
    let t = format!("{BASE}\n[[balancers]]\nname = \"api\"\nport = 1\nbackends = [\"worker\"]\n");
    one_error(&t, "balancers[1].name", "already used by balancers[0]");
}

#[test]
fn check_fields_belong_to_their_kind() {
    let t = edit(
        "check = { kind = \"https\", path = \"/readyz\", status = 200 }",
        "check = { kind = \"tcp\", path = \"/readyz\" }",
    );
    one_error(
        &t,
        "balancers[0].check.path",
        "only used by kind = \"https\"",
    );
    let t = edit(
        "check = { kind = \"https\", path = \"/readyz\", status = 200 }",
        "check = { kind = \"htps\" }",
    );
    let e = one_error(&t, "balancers[0].check.kind", "unknown value");
    assert!(e.help.contains("did you mean \"https\""), "{e}");
    let t = edit("port = 6443", "port = 6443\nrise = 0");
    one_error(&t, "balancers[0].rise", "outside 1..1000");
    let t = edit("port = 6443", "port = 6443\ninterval = \"1ms\"");
    one_error(&t, "balancers[0].interval", "outside 100ms..1h");
}

#[test]
fn ntp_stratum_is_a_servable_one() {
    let t = format!("{BASE}\n[ntp]\nlocal_stratum = 16\n");
    one_error(&t, "ntp.local_stratum", "not one a server can serve");
    let inv = ok(&format!(
        "{BASE}\n[ntp]\nenable = false\nrequire_sync = true\n"
    ));
    assert!(!inv.ntp().enable);
    assert!(inv.ntp().require_sync);
}

#[test]
fn drain_comes_from_the_node_or_its_role() {
    let t = edit(
        "[roles.master]\nprofile = \"p\"",
        "[roles.master]\nprofile = \"p\"\ndrain = true",
    );
    let t = t.replacen(
        "name = \"m1\"\nrole = \"master\"",
        "name = \"m1\"\nrole = \"master\"\ndrain = false",
        1,
    );
    let inv = ok(&t);
    let drained: Vec<(&str, bool)> = inv.balancers()[0]
        .backends
        .iter()
        .map(|b| (b.node.as_str(), b.drained))
        .collect();
    assert_eq!(drained, [("bootstrap", false), ("m0", true), ("m1", false)]);
}

#[test]
fn all_backends_drained_is_a_warning() {
    let t = edit(
        "[roles.master]\nprofile = \"p\"",
        "[roles.master]\nprofile = \"p\"\ndrain = true",
    );
    let t = t.replacen(
        "name = \"bootstrap\"",
        "name = \"bootstrap\"\ndrain = true",
        1,
    );
    let inv = ok(&t);
    let w = &inv.warnings()[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.path.to_string(), "balancers[0].backends");
    assert!(w.message.contains("every backend"), "{w}");
}

#[test]
fn okd_pitfalls_are_warnings() {
    let inv = ok(BASE);
    assert!(inv.warnings().is_empty(), "{:?}", inv.warnings());
    // A wildcard at the cluster level, *.apps without 443/80 balancers,
    // api-int without a machine-config balancer.
    let t = edit(
        "  { name = \"api\", type = \"A\", value = \"10.9.0.254\" },",
        "  { name = \"api\", type = \"A\", value = \"10.9.0.254\" },\n  { name = \"*\", type = \"A\", value = \"10.9.0.254\" },\n  { name = \"*.apps\", type = \"A\", value = \"10.9.0.254\" },\n  { name = \"api-int\", type = \"A\", value = \"10.9.0.254\" },",
    );
    let inv = ok(&t);
    let msgs: Vec<String> = inv
        .warnings()
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(
        msgs[0].contains("wildcard at the cluster level"),
        "{msgs:#?}"
    );
    assert!(msgs[1].contains("ports 443 and 80"), "{msgs:#?}");
    assert!(
        msgs[2].contains("api-int") && msgs[2].contains("22623"),
        "{msgs:#?}"
    );
    // api pointing at a node is fine; pointing nowhere useful is not.
    let inv = ok(&BASE.replace(
        "{ name = \"api\", type = \"A\", value = \"10.9.0.254\" }",
        "{ name = \"api\", type = \"A\", value = \"10.9.0.99\" }",
    ));
    assert_eq!(inv.warnings().len(), 1);
    assert!(inv.warnings()[0].message.contains("port 6443"));
}

#[test]
fn missing_boot_files_are_listed_per_profile() {
    let dir = tempfile::tempdir().unwrap();
    let inv = ok(BASE);
    let missing = inv.missing_assets(dir.path());
    let paths: Vec<&str> = missing.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "ign/bootstrap.ign",
            "ign/master.ign",
            "ign/worker.ign",
            "i",
            "k"
        ],
        "{missing:#?}"
    );
    for f in [
        "k",
        "i",
        "ign/bootstrap.ign",
        "ign/master.ign",
        "ign/worker.ign",
    ] {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
    assert!(inv.missing_assets(dir.path()).is_empty());
}

#[test]
fn diagnostics_show_the_source_line_with_a_caret() {
    let t = edit("ip = \"10.9.0.20\"", "ip = \"10.9.0.2x0\"");
    let e = one_error(&t, "nodes[1].ip", "is not an IPv4 address");
    let shown = e.render(false);
    assert!(shown.contains("--> lab.toml:"), "{shown}");
    assert!(shown.contains("ip = \"10.9.0.2x0\""), "{shown}");
    assert!(
        shown.contains("^^^^^^^^^^^^"),
        "caret under the value:\n{shown}"
    );
    assert!(shown.contains("help:"), "{shown}");
}

#[test]
fn unknown_keys_get_did_you_mean() {
    let t = edit("name = \"m0\"", "name = \"m0\"\nrol = \"x\"");
    let e = one_error(&t, "nodes[1].rol", "unknown key `rol`");
    assert!(e.help.contains("did you mean `role`"), "{e}");
    let t = edit("role = \"worker\"", "role = \"wroker\"");
    let e = one_error(&t, "nodes[3].role", "unknown role \"wroker\"");
    assert!(e.help.contains("did you mean \"worker\""), "{e}");
}

#[test]
fn type_errors_in_the_users_words() {
    let t = edit("port = 6443", "port = \"6443\"");
    let e = one_error(
        &t,
        "balancers[0].port",
        "expected a whole number from 0 to 65535",
    );
    assert!(e.message.contains("found the string \"6443\""), "{e}");
    let t = edit("port = 6443", "port = 70000");
    one_error(
        &t,
        "balancers[0].port",
        "expected a whole number from 0 to 65535",
    );
}

#[test]
fn names_are_reported_as_written() {
    let t = edit("name = \"m1\"", "name = \"M0\"");
    let e = one_error(&t, "nodes[2].name", "already used by nodes[1].name");
    assert!(e.message.contains("\"M0\""), "as written: {e}");
}

#[test]
fn sizes_as_virt_install_users_write_them() {
    let t = edit(
        "[roles.worker]\nprofile = \"p\"",
        "[roles.worker]\nprofile = \"p\"\nmemory = \"8G\"\ndisks = [\"100G\"]",
    );
    let inv = ok(&t);
    let w0 = inv.node_named("w0").unwrap();
    assert_eq!(w0.memory, 8 << 30);
    assert_eq!(w0.disks, [100u64 << 30]);
}
