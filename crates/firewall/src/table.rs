//! Applying, listing and removing `table inet bootlab` on one machine.
//!
//! [`Nft`] says how to run `nft` (directly, or inside a network namespace
//! for tests); [`BootlabTable`] is the table on that machine. Every change is
//! one `nft -j -f -` run, i.e. one kernel transaction: if nft rejects any
//! part, nothing changes and the error carries nft's own explanation.
//!
//! These calls spawn `nft` and wait for it (a few milliseconds); async
//! callers should use `spawn_blocking`.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::{Command, Stdio};

use nftables::schema::Nftables;

use crate::batch::{apply_batch, remove_batch};
use crate::live::{CounterValue, DeniedEndpoint, ListingError, TableState, parse_table_listing};
use crate::render::{render_nft, same_objects, strip_state};
use crate::ruleset::{DENIED_SET, Ruleset, TABLE_NAME};

/// Why talking to nftables failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// nft could not be started.
    #[error("cannot run {program:?}: {source}")]
    Exec {
        /// The program.
        program: OsString,
        /// The OS error.
        source: std::io::Error,
    },
    /// nft ran and refused; nothing was changed.
    #[error("nft refused to {action} (nothing was changed): {stderr}")]
    Refused {
        /// What we asked for.
        action: &'static str,
        /// nft's explanation.
        stderr: String,
    },
    /// nft's output was not what we expected.
    #[error(transparent)]
    Listing(#[from] ListingError),
}

/// How to run `nft`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    program: OsString,
    prefix_args: Vec<OsString>,
}

impl Default for Nft {
    fn default() -> Self {
        Self::system()
    }
}

impl Nft {
    /// `nft` from `PATH`, acting on this machine's network namespace.
    pub fn system() -> Self {
        Self {
            program: "nft".into(),
            prefix_args: vec![],
        }
    }

    /// `ip netns exec <name> nft`: acts inside the named network namespace.
    pub fn in_netns(name: &str) -> Self {
        Self {
            program: "ip".into(),
            prefix_args: ["netns", "exec", name, "nft"]
                .iter()
                .map(OsString::from)
                .collect(),
        }
    }

    /// Any command that behaves like `nft` once `args` are appended.
    pub fn command(program: impl Into<OsString>, prefix_args: Vec<OsString>) -> Self {
        Self {
            program: program.into(),
            prefix_args,
        }
    }

    /// Runs one JSON document as one transaction.
    pub fn run_batch(&self, batch: &Nftables<'_>, action: &'static str) -> Result<(), TableError> {
        let payload = serde_json::to_string(batch).map_err(|e| TableError::Refused {
            action,
            stderr: format!("cannot serialise the batch: {e}"),
        })?;
        self.run_json(&payload, action)
    }

    /// Runs a raw JSON document (`nft -j -f -`) as one transaction.
    ///
    /// Not `nftables::helper::apply_ruleset_raw`: it leaves nft's stderr on
    /// our terminal, and the error must say why nft refused.
    pub fn run_json(&self, payload: &str, action: &'static str) -> Result<(), TableError> {
        let exec_err = |source| TableError::Exec {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(&self.prefix_args)
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(exec_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error (nft exited early) shows up in its status below.
            let _ = stdin.write_all(payload.as_bytes());
        }
        let out = child.wait_with_output().map_err(exec_err)?;
        if out.status.success() {
            return Ok(());
        }
        let mut why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if why.is_empty() {
            why = format!("nft exited with {}", out.status);
        }
        Err(TableError::Refused {
            action,
            stderr: why,
        })
    }

    /// Runs `nft <args>` and returns stdout, or `Ok(None)` when nft says the
    /// object does not exist.
    pub fn output(&self, args: &[&str]) -> Result<Option<String>, TableError> {
        let out = Command::new(&self.program)
            .args(&self.prefix_args)
            .args(args)
            .output()
            .map_err(|source| TableError::Exec {
                program: self.program.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        Err(TableError::Refused {
            action: "list",
            stderr,
        })
    }
}

/// What [`BootlabTable::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The table did not exist and was created.
    Created,
    /// The table existed; its rules were replaced and its state kept.
    Replaced,
}

/// `table inet bootlab` on one machine (or namespace).
#[derive(Debug, Clone, Default)]
pub struct BootlabTable {
    nft: Nft,
}

impl BootlabTable {
    /// The table reached through `nft`.
    pub fn new(nft: Nft) -> Self {
        Self { nft }
    }

    /// How this table runs nft.
    pub fn nft(&self) -> &Nft {
        &self.nft
    }

    /// Makes the table hold `ruleset`, in one transaction. Rules are
    /// replaced; learned set elements and counter values are kept. No other
    /// table is touched. On error nothing changed.
    pub fn apply(&self, ruleset: &Ruleset) -> Result<ApplyOutcome, TableError> {
        let current = self.state()?;
        let outcome = if current.is_some() {
            ApplyOutcome::Replaced
        } else {
            ApplyOutcome::Created
        };
        let batch = apply_batch(ruleset, &current.unwrap_or_default());
        self.nft.run_batch(&batch, "apply the bootlab ruleset")?;
        Ok(outcome)
    }

    /// Deletes the table (and with it the learned set and counters).
    /// Returns false when it did not exist.
    pub fn remove(&self) -> Result<bool, TableError> {
        let existed = self.state()?.is_some();
        self.nft
            .run_batch(&remove_batch(), "remove table inet bootlab")?;
        Ok(existed)
    }

    /// The live table as parsed objects, `None` when it does not exist.
    pub fn state(&self) -> Result<Option<TableState>, TableError> {
        match self
            .nft
            .output(&["-j", "list", "table", "inet", TABLE_NAME])?
        {
            Some(json) => Ok(Some(parse_table_listing(&json)?)),
            None => Ok(None),
        }
    }

    /// `nft list table inet bootlab` as nft prints it (with counter values
    /// and set elements), `None` when it does not exist.
    pub fn listing(&self) -> Result<Option<String>, TableError> {
        self.nft.output(&["list", "table", "inet", TABLE_NAME])
    }

    /// The live listing without state (see [`strip_state`]).
    pub fn listing_without_state(&self) -> Result<Option<String>, TableError> {
        Ok(self.listing()?.map(|l| strip_state(&l)))
    }

    /// True when the live table holds exactly `ruleset`'s objects (state
    /// and the order of counters and sets ignored).
    pub fn matches(&self, ruleset: &Ruleset) -> Result<bool, TableError> {
        Ok(self
            .listing_without_state()?
            .is_some_and(|live| same_objects(&live, &render_nft(ruleset))))
    }

    /// Endpoints (address, protocol, port) refused in the last hour, most
    /// recently refused first; empty when the table is absent. For `bootlab
    /// status`: what the install tried to reach and could not.
    pub fn denied_endpoints(&self) -> Result<Vec<DeniedEndpoint>, TableError> {
        let mut v = self
            .state()?
            .and_then(|s| s.set(DENIED_SET).map(|set| set.endpoints.clone()))
            .unwrap_or_default();
        v.sort_by(|a, b| b.expires.cmp(&a.expires).then_with(|| a.cmp(b)));
        Ok(v)
    }

    /// Every named counter with its value (empty when the table is absent):
    /// the denied-flow counts for `/metrics` and `bootlab status`.
    pub fn counters(&self) -> Result<Vec<CounterValue>, TableError> {
        Ok(self.state()?.map(|s| s.counters).unwrap_or_default())
    }
}
