//! The HTTP service's counters in the shared Prometheus registry, and the
//! per-peer log gate (`bootlab_netio`'s) so bad input is logged without
//! flooding the log.
//!
//! Families:
//! - `bootlab_http_requests_total{kind}`: `script`, `asset`, `api`, `metrics`, `page`
//!   (the status page and its assets), `other`;
//! - `bootlab_http_sent_bytes_total`: response body bytes actually written;
//! - `bootlab_http_errors_total{kind}`: refused paths, bad ranges, unknown machines,
//!   timeouts, connection-cap refusals...;
//! - `bootlab_http_open_connections`: open connections (gauge).
//! - `bootlab_http_response_duration_seconds`: time to the response head.

use std::net::IpAddr;

use bootlab_state::metrics::Histogram;
use bootlab_state::{Counter, Metrics};

/// What a request was for, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `boot.ipxe`, GRUB and pxelinux configs.
    Script,
    /// `/assets/...`.
    Asset,
    /// `/api/v1/...`.
    Api,
    /// `/metrics`.
    Metrics,
    /// `/healthz`, `/readyz`.
    Health,
    /// The status page (`/`, `/static/...`).
    Page,
    /// Anything else.
    Other,
}

impl RequestKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Script => "script",
            Self::Asset => "asset",
            Self::Api => "api",
            Self::Metrics => "metrics",
            Self::Health => "health",
            Self::Page => "page",
            Self::Other => "other",
        }
    }
}

/// Error kinds registered up front, so they show as 0 before they happen.
const ERROR_KINDS: &[&str] = &[
    "not_found",
    "traversal",
    "escape",
    "double_encoding",
    "bad_encoding",
    "malformed_path",
    "bad_range",
    "precondition_failed",
    "unknown_machine",
    "bad_mac",
    "render",
    "io",
    "aborted_transfer",
    "header_timeout",
    "idle_timeout",
    "connection_cap",
    "bad_request",
];

/// Counter handles of the HTTP service.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    registry: Metrics,
    script: Counter,
    asset: Counter,
    api: Counter,
    metrics: Counter,
    health: Counter,
    page: Counter,
    other: Counter,
    /// Response body bytes written.
    pub bytes_sent: Counter,
    /// Time from a request to its response head.
    pub response_latency: Histogram,
}

impl HttpMetrics {
    /// Registers the HTTP families in `registry`.
    pub fn new(registry: &Metrics) -> Self {
        let req = |kind: RequestKind| {
            registry.counter(
                "bootlab_http_requests_total",
                "HTTP requests received, by kind.",
                &[("kind", kind.as_str())],
            )
        };
        let this = Self {
            registry: registry.clone(),
            script: req(RequestKind::Script),
            asset: req(RequestKind::Asset),
            api: req(RequestKind::Api),
            metrics: req(RequestKind::Metrics),
            health: req(RequestKind::Health),
            page: req(RequestKind::Page),
            other: req(RequestKind::Other),
            bytes_sent: registry.counter(
                "bootlab_http_sent_bytes_total",
                "HTTP response body bytes written.",
                &[],
            ),
            response_latency: registry.histogram(
                "bootlab_http_response_duration_seconds",
                "Time from an HTTP request to its response head.",
                &[],
            ),
        };
        for kind in ERROR_KINDS {
            this.error_counter(kind);
        }
        this
    }

    /// Counts one request.
    pub fn request(&self, kind: RequestKind) {
        match kind {
            RequestKind::Script => &self.script,
            RequestKind::Asset => &self.asset,
            RequestKind::Api => &self.api,
            RequestKind::Metrics => &self.metrics,
            RequestKind::Health => &self.health,
            RequestKind::Page => &self.page,
            RequestKind::Other => &self.other,
        }
        .inc();
    }

    fn error_counter(&self, kind: &str) -> Counter {
        self.registry.counter(
            "bootlab_http_errors_total",
            "HTTP bad input, refusals and failures, by kind.",
            &[("kind", kind)],
        )
    }

    /// Counts one error of `kind` (a rare path: looks the counter up).
    pub fn error(&self, kind: &str) {
        self.error_counter(kind).inc();
    }
}

/// One log line per peer and kind per interval (bootlab_netio's log gate:
/// bounded, with a global budget so many peers cannot flood the log).
pub type LogLimiter = bootlab_netio::LogGate<(IpAddr, &'static str)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_once_per_interval() {
        let l = LogLimiter::new(std::time::Duration::from_secs(3600));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.allow((a, "x")));
        assert!(!l.allow((a, "x")));
        assert!(l.allow((a, "y")));
        assert!(l.allow((b, "x")));
    }

    #[test]
    fn families_are_registered() {
        let reg = Metrics::new();
        let m = HttpMetrics::new(&reg);
        m.request(RequestKind::Asset);
        m.error("traversal");
        let text = reg.render();
        assert!(
            text.contains(r#"bootlab_http_requests_total{kind="asset"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bootlab_http_errors_total{kind="traversal"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bootlab_http_errors_total{kind="connection_cap"} 0"#),
            "{text}"
        );
    }
}
