//! A stand-alone driver for bootlab's load balancers, used by `bench/lb.sh`
//! until bootlabd runs them: reads a small TOML file, binds, runs until
//! SIGTERM/SIGINT, reloads the file on SIGHUP.
//!
//! ```text
//! cargo run --release -p bootlab-lb --example lb -- CONFIG.toml
//! cargo run --release -p bootlab-lb --example lb -- CONFIG.toml --haproxy-cfg
//! ```
//!
//! The file (defaults as in lab.toml's `[[balancers]]`):
//!
//! ```toml
//! [[balancers]]
//! name = "api"
//! listen = "127.0.0.1:6443"
//! backends = [{ name = "master0", addr = "127.0.0.1:16443" }]  # drained = true
//! algorithm = "roundrobin"        # or leastconn
//! check = { kind = "tcp" }        # tls | https (path, status)
//! interval = "5s"
//! rise = 2
//! fall = 3
//! max_connections = 4096
//! idle_timeout = "5m"
//! zero_copy = false
//! buffer_size = 65536
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bootlab_lb::{Algorithm, BackendConfig, BalancerConfig, HealthCheck, LoadBalancers};
use serde::Deserialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    balancers: Vec<Balancer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Balancer {
    name: String,
    listen: SocketAddr,
    backends: Vec<Backend>,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    check: Option<Check>,
    #[serde(default, with = "humantime_serde_opt")]
    interval: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    max_connections: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    idle_timeout: Option<Duration>,
    zero_copy: Option<bool>,
    buffer_size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Backend {
    name: String,
    addr: SocketAddr,
    #[serde(default)]
    drained: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    kind: String,
    path: Option<String>,
    status: Option<u16>,
}

/// `Option<Duration>` from humantime strings ("5s", "200ms").
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn load(path: &Path) -> anyhow::Result<Vec<BalancerConfig>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    file.balancers
        .into_iter()
        .map(|b| {
            let backends = b
                .backends
                .into_iter()
                .map(|x| BackendConfig {
                    name: x.name,
                    addr: x.addr,
                    drained: x.drained,
                })
                .collect();
            let mut c = BalancerConfig::new(b.name, b.listen, backends);
            c.algorithm = match b.algorithm.as_deref() {
                None | Some("roundrobin") => Algorithm::RoundRobin,
                Some("leastconn") => Algorithm::LeastConn,
                Some(other) => anyhow::bail!("balancer {}: unknown algorithm {other:?}", c.name),
            };
            c.check = match b.check {
                None => HealthCheck::Tcp,
                Some(check) => match check.kind.as_str() {
                    "tcp" => HealthCheck::Tcp,
                    "tls" => HealthCheck::Tls,
                    "https" => HealthCheck::Https {
                        path: check.path.unwrap_or_else(|| "/".into()),
                        status: check.status.unwrap_or(200),
                    },
                    other => anyhow::bail!("balancer {}: unknown check kind {other:?}", c.name),
                },
            };
            c.interval = b.interval.unwrap_or(c.interval);
            c.rise = b.rise.unwrap_or(c.rise);
            c.fall = b.fall.unwrap_or(c.fall);
            c.limits.max_connections = b.max_connections.unwrap_or(c.limits.max_connections);
            c.limits.idle_timeout = b.idle_timeout.unwrap_or(c.limits.idle_timeout);
            c.limits.zero_copy = b.zero_copy.unwrap_or(c.limits.zero_copy);
            c.limits.buffer_size = b.buffer_size.unwrap_or(c.limits.buffer_size);
            Ok(c)
        })
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first().map(std::path::PathBuf::from) else {
        eprintln!("usage: lb CONFIG.toml [--haproxy-cfg]");
        return ExitCode::from(64);
    };
    let configs = match load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lb: {e:#}");
            return ExitCode::from(64);
        }
    };
    if args.iter().any(|a| a == "--haproxy-cfg") {
        print!("{}", bootlab_lb::haproxy_cfg(&configs));
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // bootlabd's runtime: multi-thread, one worker per core (LB_WORKERS
    // overrides the count, for experiments).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("LB_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(&path, configs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &Path, configs: Vec<BalancerConfig>) -> anyhow::Result<()> {
    let limit = bootlab_lb::raise_nofile(bootlab_lb::fds_needed(&configs))?;
    if limit.short {
        tracing::warn!(
            "RLIMIT_NOFILE is {} (hard limit): below what the caps need",
            limit.soft
        );
    }
    let mut bound = Vec::new();
    for c in configs {
        let listener = bootlab_lb::bind(c.listen)
            .with_context(|| format!("binding {} on {}", c.name, c.listen))?;
        bound.push((c, listener));
    }
    let shutdown = CancellationToken::new();
    let lbs = LoadBalancers::start(bound, Arc::new(|_| {}), shutdown.clone()).await;
    let (mut term, mut int, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
    );
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match load(path) {
                Ok(configs) => {
                    let report = lbs.reconfigure(configs);
                    tracing::info!("reloaded: {report:?}");
                }
                Err(e) => tracing::error!("reload refused, the old configuration keeps serving: {e:#}"),
            },
        }
    }
    shutdown.cancel();
    lbs.stopped().await;
    Ok(())
}
