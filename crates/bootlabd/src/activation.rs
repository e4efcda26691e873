//! Sockets handed over at start (socket activation): systemd's protocol
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`, fds from 3), as systemd `.socket` units
//! and the test harness pass them. A service whose name is among the passed
//! sockets uses that socket instead of binding its `services.listen`
//! address; the others bind as usual.
//!
//! Names: `dhcp`, `pxe` (port 4011, proxyDHCP only), `dns` (a datagram and
//! a stream socket), `tftp`, `http`,
//! `ntp`, and `lb-<balancer name>`. `LISTEN_PID`, when set, must be this
//! process (the `listenfd` crate's reading of the protocol, which also
//! lets a harness that cannot know the child's pid leave it out).

use std::collections::HashMap;

use listenfd::ListenFd;
use tracing::{info, warn};

/// The sockets passed at start, by name.
pub(crate) struct Inherited {
    fds: ListenFd,
    by_name: HashMap<String, Vec<usize>>,
}

impl Inherited {
    /// Reads the environment (and clears the variables, so children do not
    /// see them).
    pub(crate) fn from_env() -> Self {
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let fds = ListenFd::from_env();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, name) in names.split(':').enumerate().take(fds.len()) {
            by_name.entry(name.to_owned()).or_default().push(i);
        }
        if fds.len() > 0 {
            info!(count = fds.len(), names = %names, "sockets passed at start");
        }
        Self { fds, by_name }
    }

    /// The datagram socket passed as `name`, if any.
    pub(crate) fn udp(&mut self, name: &str) -> Option<std::net::UdpSocket> {
        for i in self.by_name.get(name).cloned().unwrap_or_default() {
            if let Ok(Some(s)) = self.fds.take_udp_socket(i) {
                return Some(s);
            }
        }
        None
    }

    /// The listening stream socket passed as `name`, if any.
    pub(crate) fn tcp(&mut self, name: &str) -> Option<std::net::TcpListener> {
        for i in self.by_name.get(name).cloned().unwrap_or_default() {
            if let Ok(Some(s)) = self.fds.take_tcp_listener(i) {
                return Some(s);
            }
        }
        None
    }

    /// Logs sockets nobody took (a name no service has, or a wrong kind).
    pub(crate) fn warn_unused(&mut self) {
        let mut names: Vec<(&String, &Vec<usize>)> = self.by_name.iter().collect();
        names.sort();
        for (name, idx) in names {
            for &i in idx {
                let unused = matches!(self.fds.take_raw_fd(i), Ok(Some(_)));
                if unused {
                    warn!(name = %name, index = i, "a socket passed at start matches no service; ignored");
                }
            }
        }
    }
}
