//! Restricted forwarding of names under `egress.allow_domains`.
//!
//! The DNSpooq lessons: every upstream query leaves from a fresh socket on a
//! random source port with a random ID; a reply is accepted only from the
//! upstream's address and port, with our ID and our question; identical
//! questions pending at the same time share one upstream query. Addresses in
//! accepted answers are handed out on a channel as [`LearnedBatch`]es of [`LearnedAddress`]es (the
//! daemon feeds them to the firewall's egress set).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bootlab_state::{Counter, Metrics};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{debug, warn};

use crate::zone::key_of;

/// An address the forwarder learned for an allow-listed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedAddress {
    /// The name that was asked (lowercase, no trailing dot).
    pub name: String,
    /// One of its addresses.
    pub address: IpAddr,
    /// How long the upstream said it stays valid.
    pub ttl: Duration,
}

/// The addresses learned from one upstream answer, handed out *before* the
/// answer goes back to the client: the receiver (bootlabd) adds them to the
/// firewall's egress set and then signals `applied`, so the client's first
/// connection to them is already allowed. The forwarder waits at most
/// [`LEARN_ACK_WAIT`] for the signal, so a stuck consumer cannot stall DNS.
#[derive(Debug)]
pub struct LearnedBatch {
    /// The addresses, in answer order.
    pub addresses: Vec<LearnedAddress>,
    /// Signal (send or drop) once the addresses are in effect.
    pub applied: oneshot::Sender<()>,
}

/// How long an answer waits for its learned addresses to be applied.
pub const LEARN_ACK_WAIT: Duration = Duration::from_millis(500);

/// Why one upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Socket error.
    #[error("upstream i/o: {0}")]
    Io(#[from] std::io::Error),
    /// No matching reply in time.
    #[error("no matching reply within {0:?}")]
    Timeout(Duration),
    /// The reply could not be parsed or did not match (TCP).
    #[error("bad reply from upstream")]
    BadReply,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PendingKey {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
}

type Waiters = Vec<oneshot::Sender<Option<Arc<Message>>>>;

#[derive(Debug)]
struct ForwardCounters {
    upstream_queries: Counter,
    deduplicated: Counter,
    mismatched: Counter,
    failed: Counter,
    learned: Counter,
    learned_dropped: Counter,
    busy: Counter,
}

#[derive(Debug)]
struct Inner {
    pending: Mutex<HashMap<PendingKey, Waiters>>,
    timeout: Duration,
    max_pending: usize,
    learned: Option<mpsc::Sender<LearnedBatch>>,
    counters: ForwardCounters,
}

/// The forwarder. Cheap to clone; lives as long as the DNS service.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

/// Largest UDP reply we ask upstreams for.
const UPSTREAM_PAYLOAD: u16 = 1232;
/// Upstreams tried per question.
const MAX_UPSTREAMS_TRIED: usize = 3;

impl Forwarder {
    /// A forwarder waiting `timeout` per upstream, with at most `max_pending`
    /// distinct questions in flight, reporting learned addresses to `learned`.
    pub fn new(
        timeout: Duration,
        max_pending: usize,
        learned: Option<mpsc::Sender<LearnedBatch>>,
        metrics: &Metrics,
    ) -> Self {
        let c = |name: &str, help: &str| metrics.counter(name, help, &[]);
        let counters = ForwardCounters {
            upstream_queries: c(
                "bootlab_dns_upstream_queries_total",
                "Queries sent to upstream resolvers.",
            ),
            deduplicated: c(
                "bootlab_dns_forward_deduplicated_total",
                "Forwarded questions merged into an identical pending one.",
            ),
            mismatched: c(
                "bootlab_dns_upstream_mismatched_total",
                "Datagrams on a forwarding socket that did not match address, port, ID and question.",
            ),
            failed: c(
                "bootlab_dns_forward_failed_total",
                "Forwarded questions no upstream answered.",
            ),
            learned: c(
                "bootlab_dns_learned_addresses_total",
                "Addresses learned for allow-listed names.",
            ),
            learned_dropped: c(
                "bootlab_dns_learned_dropped_total",
                "Learned addresses dropped because the consumer was full or gone.",
            ),
            busy: c(
                "bootlab_dns_forward_busy_total",
                "Forwarded questions refused because too many were pending.",
            ),
        };
        Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(HashMap::new()),
                timeout,
                max_pending,
                learned,
                counters,
            }),
        }
    }

    /// Resolves `question` upstream (sharing a pending identical one).
    /// `None`: no upstream answered (the client gets SERVFAIL).
    pub async fn resolve(
        &self,
        question: &Query,
        upstreams: &[SocketAddr],
    ) -> Option<Arc<Message>> {
        let key = PendingKey {
            name: question.name().to_lowercase(),
            qtype: question.query_type(),
            qclass: question.query_class(),
        };
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(waiters) = pending.get_mut(&key) {
                waiters.push(tx);
                self.inner.counters.deduplicated.inc();
                false
            } else {
                if pending.len() >= self.inner.max_pending {
                    self.inner.counters.busy.inc();
                    return None;
                }
                pending.insert(key.clone(), vec![tx]);
                true
            }
        };
        if first {
            let inner = self.inner.clone();
            let question = question.clone();
            let upstreams = upstreams.to_vec();
            tokio::spawn(async move {
                let result = inner
                    .exchange_any(&question, &upstreams)
                    .await
                    .map(Arc::new);
                let waiters = inner
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key)
                    .unwrap_or_default();
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            });
        }
        rx.await.ok().flatten()
    }
}

impl Inner {
    async fn exchange_any(&self, question: &Query, upstreams: &[SocketAddr]) -> Option<Message> {
        for upstream in upstreams.iter().take(MAX_UPSTREAMS_TRIED) {
            self.counters.upstream_queries.inc();
            let mut result = self.exchange_udp(question, *upstream).await;
            if let Ok(m) = &result
                && m.metadata.truncation
            {
                debug!(%upstream, "truncated upstream reply, retrying over TCP");
                result = self.exchange_tcp(question, *upstream).await;
            }
            match result {
                Ok(m) => {
                    self.learn(question, &m).await;
                    return Some(m);
                }
                Err(e) => warn!(%upstream, name = %question.name(), "forwarding failed: {e}"),
            }
        }
        self.counters.failed.inc();
        None
    }

    /// Hands the answer's addresses to the learned-set consumer and waits
    /// (bounded) until it says they are in effect.
    async fn learn(&self, question: &Query, reply: &Message) {
        let Some(tx) = &self.learned else { return };
        let name = key_of(question.name());
        let addresses: Vec<LearnedAddress> = reply
            .answers
            .iter()
            .filter_map(|r| {
                let address = match &r.data {
                    RData::A(A(ip)) => IpAddr::V4(*ip),
                    RData::AAAA(AAAA(ip)) => IpAddr::V6(*ip),
                    _ => return None,
                };
                Some(LearnedAddress {
                    name: name.clone(),
                    address,
                    ttl: Duration::from_secs(u64::from(r.ttl)),
                })
            })
            .collect();
        if addresses.is_empty() {
            return;
        }
        let n = addresses.len() as u64;
        let (applied, done) = oneshot::channel();
        if tx.try_send(LearnedBatch { addresses, applied }).is_err() {
            self.counters.learned_dropped.add(n);
            return;
        }
        self.counters.learned.add(n);
        if timeout(LEARN_ACK_WAIT, done).await.is_err() {
            warn!(name = %name, "learned addresses not applied within {LEARN_ACK_WAIT:?}; answering anyway");
        }
    }

    fn query_bytes(question: &Query, id: u16) -> Vec<u8> {
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(question.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        msg.set_edns(edns);
        let mut out = Vec::with_capacity(128);
        let mut enc = BinEncoder::new(&mut out);
        // A single validated question always encodes.
        let _ = msg.emit(&mut enc);
        out
    }

    fn matches(reply: &Message, id: u16, question: &Query) -> bool {
        reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && reply.queries.len() == 1
            && reply.queries[0].name().to_lowercase() == question.name().to_lowercase()
            && reply.queries[0].query_type() == question.query_type()
            && reply.queries[0].query_class() == question.query_class()
    }

    /// A socket on a random port (explicitly drawn; the kernel's choice if
    /// ten draws are taken).
    async fn random_port_socket(upstream: SocketAddr) -> std::io::Result<UdpSocket> {
        let ip: IpAddr = if upstream.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        for _ in 0..10 {
            let port = rand::random_range(1024..=u16::MAX);
            if let Ok(s) = UdpSocket::bind((ip, port)).await {
                return Ok(s);
            }
        }
        UdpSocket::bind((ip, 0)).await
    }

    async fn exchange_udp(
        &self,
        question: &Query,
        upstream: SocketAddr,
    ) -> Result<Message, ForwardError> {
        let socket = Self::random_port_socket(upstream).await?;
        let id: u16 = rand::random();
        socket
            .send_to(&Self::query_bytes(question, id), upstream)
            .await?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, from) = timeout_at(deadline, socket.recv_from(&mut buf))
                .await
                .map_err(|_| ForwardError::Timeout(self.timeout))??;
            if from != upstream {
                self.counters.mismatched.inc();
                debug!(%from, %upstream, "reply from the wrong address or port, ignored");
                continue;
            }
            match Message::from_vec(&buf[..n]) {
                Ok(m) if Self::matches(&m, id, question) => return Ok(m),
                _ => {
                    self.counters.mismatched.inc();
                    debug!(%upstream, "reply with the wrong ID or question, ignored");
                }
            }
        }
    }

    async fn exchange_tcp(
        &self,
        question: &Query,
        upstream: SocketAddr,
    ) -> Result<Message, ForwardError> {
        let id: u16 = rand::random();
        let query = Self::query_bytes(question, id);
        let work = async {
            let mut stream = TcpStream::connect(upstream).await?;
            let mut framed = Vec::with_capacity(query.len() + 2);
            framed.extend_from_slice(&u16::try_from(query.len()).unwrap_or(0).to_be_bytes());
            framed.extend_from_slice(&query);
            stream.write_all(&framed).await?;
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            match Message::from_vec(&buf) {
                Ok(m) if Self::matches(&m, id, question) => Ok(m),
                _ => Err(ForwardError::BadReply),
            }
        };
        timeout(self.timeout, work)
            .await
            .map_err(|_| ForwardError::Timeout(self.timeout))?
    }
}
