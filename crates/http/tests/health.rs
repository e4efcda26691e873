//! `/healthz` answers while the process serves; `/readyz` follows the
//! readiness flag bootlabd sets (503 while starting or stopping, 200 with
//! the lab once every service is bound), and both are counted.

mod common;

use bootlab_http::{Limits, Readiness};
use common::{Lab, get_text, metric};

#[test]
fn healthz_is_ok_and_readyz_follows_the_flag() {
    let ready = Readiness::new(false);
    let lab = Lab::start_full(Limits::default(), |t| t, ready.clone());

    let (code, body) = get_text(&[&lab.url("/healthz")]);
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    let (code, body) = get_text(&[&lab.url("/readyz")]);
    assert_eq!((code, body.as_str()), (503, "not ready\n"));

    ready.set(true);
    let (code, body) = get_text(&[&lab.url("/readyz")]);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("ready: lab dev (dev.lab.test), 2 nodes"),
        "{body}"
    );

    // Stopping: not ready again, still alive.
    ready.set(false);
    assert_eq!(get_text(&[&lab.url("/readyz")]).0, 503);
    assert_eq!(get_text(&[&lab.url("/healthz")]).0, 200);

    assert_eq!(
        metric(&lab, "bootlab_http_requests_total{kind=\"health\"}"),
        5
    );
}

#[test]
fn a_server_started_on_its_own_is_ready() {
    let lab = Lab::start();
    let (code, body) = get_text(&[&lab.url("/readyz")]);
    assert_eq!(code, 200, "{body}");
    // HEAD works too (load balancers' probes).
    let (code, _) = get_text(&["--head", &lab.url("/healthz")]);
    assert_eq!(code, 200);
}
