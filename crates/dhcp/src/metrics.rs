//! The DHCP server's Prometheus counters, registered once at start-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bootlab_state::metrics::Histogram;
use bootlab_state::{Counter, Metrics};
use dhcproto::v4::MessageType;

use crate::handler::{DropReason, Outcome};

/// Counter handles for the DHCP service.
#[derive(Debug, Clone)]
pub struct DhcpMetrics {
    received: Vec<(u8, Counter)>,
    sent: Vec<(u8, Counter)>,
    dropped: Vec<(DropReason, Counter)>,
    /// Options that were present but malformed (tolerated).
    pub malformed_options: Counter,
    /// Lease log rows skipped as corrupt at start-up.
    pub corrupt_rows: Counter,
    /// Group commits (one fdatasync each).
    pub commit_batches: Counter,
    /// Lease records made durable.
    pub committed_records: Counter,
    /// Commits that failed (the replies were not sent).
    pub commit_failures: Counter,
    /// Replies the socket refused to send.
    pub send_errors: Counter,
    /// From a request's arrival (its receive batch) to its reply's send;
    /// for replies that grant a lease, the group commit's fdatasync included.
    pub reply_latency: Histogram,
    leases: Arc<AtomicU64>,
}

const TYPES: [(u8, &str); 8] = [
    (1, "discover"),
    (2, "offer"),
    (3, "request"),
    (4, "decline"),
    (5, "ack"),
    (6, "nak"),
    (7, "release"),
    (8, "inform"),
];

impl DhcpMetrics {
    /// Registers the counters in `m`.
    pub fn new(m: &Metrics) -> Self {
        let received = TYPES
            .iter()
            .filter(|(c, _)| matches!(c, 1 | 3 | 4 | 7 | 8))
            .map(|(c, n)| {
                (
                    *c,
                    m.counter(
                        "bootlab_dhcp_received_total",
                        "DHCP requests received, by message type.",
                        &[("type", n)],
                    ),
                )
            })
            .collect();
        let sent = TYPES
            .iter()
            .filter(|(c, _)| matches!(c, 2 | 5 | 6))
            .map(|(c, n)| {
                (
                    *c,
                    m.counter(
                        "bootlab_dhcp_sent_total",
                        "DHCP replies sent, by message type.",
                        &[("type", n)],
                    ),
                )
            })
            .collect();
        let dropped = DropReason::ALL
            .iter()
            .map(|r| {
                (
                    *r,
                    m.counter(
                        "bootlab_dhcp_dropped_total",
                        "DHCP datagrams that got no reply, by reason.",
                        &[("reason", r.as_str())],
                    ),
                )
            })
            .collect();
        let leases = Arc::new(AtomicU64::new(0));
        let gauge = leases.clone();
        m.gauge(
            "bootlab_dhcp_lease_addresses",
            "Addresses with a lease record or quarantine.",
            &[],
            move || gauge.load(Ordering::Relaxed) as f64,
        );
        Self {
            received,
            sent,
            dropped,
            malformed_options: m.counter(
                "bootlab_dhcp_malformed_options_total",
                "Malformed options in DHCP requests (tolerated).",
                &[],
            ),
            corrupt_rows: m.counter(
                "bootlab_dhcp_lease_log_corrupt_rows_total",
                "Lease log rows skipped as corrupt.",
                &[],
            ),
            commit_batches: m.counter(
                "bootlab_dhcp_commit_batches_total",
                "Lease log group commits (one fdatasync each).",
                &[],
            ),
            committed_records: m.counter(
                "bootlab_dhcp_committed_records_total",
                "Lease records made durable.",
                &[],
            ),
            commit_failures: m.counter(
                "bootlab_dhcp_commit_failures_total",
                "Lease log writes that failed (their replies were not sent).",
                &[],
            ),
            send_errors: m.counter(
                "bootlab_dhcp_send_errors_total",
                "DHCP replies the socket refused.",
                &[],
            ),
            reply_latency: m.histogram(
                "bootlab_dhcp_reply_duration_seconds",
                "Time from a DHCP request's arrival to its reply's send (durable-lease commits included).",
                &[],
            ),
            leases,
        }
    }

    /// Counts what one outcome says.
    pub fn account(&self, out: &Outcome) {
        if let Some(t) = out.received {
            let t = u8::from(t);
            if let Some((_, c)) = self.received.iter().find(|(c, _)| *c == t) {
                c.inc();
            }
        }
        if let Some(r) = out.dropped {
            if let Some((_, c)) = self.dropped.iter().find(|(d, _)| *d == r) {
                c.inc();
            }
        }
        if !out.malformed_options.is_empty() {
            self.malformed_options
                .add(out.malformed_options.len() as u64);
        }
    }

    /// Counts a reply that went out.
    pub fn sent(&self, t: MessageType) {
        let t = u8::from(t);
        if let Some((_, c)) = self.sent.iter().find(|(c, _)| *c == t) {
            c.inc();
        }
    }

    /// Sets the lease gauge.
    pub fn set_lease_addresses(&self, n: usize) {
        self.leases.store(n as u64, Ordering::Relaxed);
    }
}
