//! Leases: the in-memory [`LeaseTable`] the handler consults, and the
//! durable [`LeaseStore`] (an append-only log) it is rebuilt from.
//!
//! # The log
//! One record per line: `<kind> <ip> <mac> <unix-secs> <crc32>` where kind
//! is `lease` (ip leased to mac until secs), `release` (mac gave ip back)
//! or `decline` (ip quarantined until secs). The CRC-32 covers the line up to
//! the space before it. A line that does not parse, fails its CRC, or lacks
//! its newline (a torn write) is skipped and counted; the rest still loads.
//!
//! Appends are written as one `write` and made durable with one
//! `fdatasync` per batch ([`LeaseStore::append`]): the caller (the group
//! commit in `server`) sends ACKs only after that returns. When the log has
//! grown well past the live state, it is compacted: the live records go to
//! a temp file, which is fsynced, renamed over the log, and the directory
//! fsynced.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bootlab_inventory::MacAddr;

/// The log's file name under `services.data_dir`.
pub const LEASE_LOG: &str = "dhcp-leases.log";
const HEADER: &str = "# bootlab dhcp leases v1\n";
/// Compact when the log holds this many more records than the live state.
const COMPACT_SLACK: usize = 4096;

/// What a log record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `ip` is leased to `mac` until `until`.
    Lease,
    /// `mac` released `ip`.
    Release,
    /// `ip` was declined by `mac`; quarantined until `until`.
    Decline,
}

impl RecordKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lease => "lease",
            Self::Release => "release",
            Self::Decline => "decline",
        }
    }
}

/// One log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// What happened.
    pub kind: RecordKind,
    /// The address.
    pub ip: Ipv4Addr,
    /// The client.
    pub mac: MacAddr,
    /// Expiry (lease) or quarantine end (decline), Unix seconds.
    pub until: u64,
}

impl LeaseRecord {
    /// The log line, newline included.
    pub fn to_line(&self) -> String {
        let body = format!(
            "{} {} {} {}",
            self.kind.as_str(),
            self.ip,
            self.mac,
            self.until
        );
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body} {crc:08x}\n")
    }

    /// Parses a line without its newline; `None` when corrupt.
    pub fn from_line(line: &str) -> Option<Self> {
        let (body, crc) = line.rsplit_once(' ')?;
        if crc.len() != 8 || u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes())
        {
            return None;
        }
        let mut f = body.split(' ');
        let kind = match f.next()? {
            "lease" => RecordKind::Lease,
            "release" => RecordKind::Release,
            "decline" => RecordKind::Decline,
            _ => return None,
        };
        let ip = f.next()?.parse().ok()?;
        let mac = f.next()?.parse().ok()?;
        let until = f.next()?.parse().ok()?;
        if f.next().is_some() {
            return None;
        }
        Some(Self {
            kind,
            ip,
            mac,
            until,
        })
    }
}

/// A lease held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub ip: Ipv4Addr,
    /// The client.
    pub mac: MacAddr,
    /// Expiry, Unix seconds.
    pub until: u64,
}

/// The live lease state: who holds which address, and which addresses are
/// quarantined. Expired leases stay (so a returning client gets its old
/// address) until the address goes to someone else.
#[derive(Debug, Clone, Default)]
pub struct LeaseTable {
    by_ip: HashMap<Ipv4Addr, Lease>,
    by_mac: HashMap<MacAddr, Ipv4Addr>,
    quarantine: HashMap<Ipv4Addr, u64>,
}

impl LeaseTable {
    /// Applies one record.
    pub fn apply(&mut self, r: &LeaseRecord) {
        match r.kind {
            RecordKind::Lease => {
                if let Some(old_ip) = self.by_mac.insert(r.mac, r.ip) {
                    if old_ip != r.ip {
                        self.by_ip.remove(&old_ip);
                    }
                }
                if let Some(prev) = self.by_ip.insert(
                    r.ip,
                    Lease {
                        ip: r.ip,
                        mac: r.mac,
                        until: r.until,
                    },
                ) {
                    if prev.mac != r.mac && self.by_mac.get(&prev.mac) == Some(&r.ip) {
                        self.by_mac.remove(&prev.mac);
                    }
                }
                self.quarantine.remove(&r.ip);
            }
            RecordKind::Release => {
                if let Some(l) = self.by_ip.get_mut(&r.ip) {
                    if l.mac == r.mac {
                        l.until = l.until.min(r.until);
                    }
                }
            }
            RecordKind::Decline => {
                if self.by_ip.get(&r.ip).is_some_and(|l| l.mac == r.mac) {
                    self.by_ip.remove(&r.ip);
                    self.by_mac.remove(&r.mac);
                }
                self.quarantine.insert(r.ip, r.until);
            }
        }
    }

    /// The lease on `ip`, expired or not.
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    /// The lease `mac` holds (or last held), expired or not.
    pub fn by_mac(&self, mac: MacAddr) -> Option<&Lease> {
        self.by_mac.get(&mac).and_then(|ip| self.by_ip.get(ip))
    }

    /// True when `ip` is quarantined at `now`.
    pub fn quarantined(&self, ip: Ipv4Addr, now: u64) -> bool {
        self.quarantine.get(&ip).is_some_and(|until| *until > now)
    }

    /// Leases not expired at `now`.
    pub fn active(&self, now: u64) -> usize {
        self.by_ip.values().filter(|l| l.until > now).count()
    }

    /// Every lease (expired included).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values()
    }

    /// Addresses tracked (leases and quarantines): bounded by the pool.
    pub fn len(&self) -> usize {
        self.by_ip.len() + self.quarantine.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records that reproduce this table (for compaction).
    pub fn records(&self) -> Vec<LeaseRecord> {
        let mut v: Vec<LeaseRecord> = self
            .by_ip
            .values()
            .map(|l| LeaseRecord {
                kind: RecordKind::Lease,
                ip: l.ip,
                mac: l.mac,
                until: l.until,
            })
            .collect();
        v.extend(self.quarantine.iter().map(|(ip, until)| LeaseRecord {
            kind: RecordKind::Decline,
            ip: *ip,
            mac: MacAddr([0; 6]),
            until: *until,
        }));
        v.sort_by_key(|r| (u32::from(r.ip), r.kind as u8));
        v
    }

    /// Forgets quarantines that ended before `now`.
    pub fn expire_quarantine(&mut self, now: u64) {
        self.quarantine.retain(|_, until| *until > now);
    }
}

/// Why the lease store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on the log.
    #[error("lease log {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// What loading the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records applied.
    pub records: usize,
    /// Lines skipped as corrupt.
    pub corrupt: usize,
}

/// The durable log.
#[derive(Debug)]
pub struct LeaseStore {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// The state the log describes (kept to compact without the handler).
    table: LeaseTable,
    records_in_log: usize,
}

impl LeaseStore {
    /// Opens (creating) `dir/dhcp-leases.log`, loads it, skipping corrupt
    /// rows, and compacts it. Returns the store, the table and what was found.
    pub fn open(dir: &Path) -> Result<(Self, LoadReport), StoreError> {
        let path = dir.join(LEASE_LOG);
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut report = LoadReport::default();
        let mut table = LeaseTable::default();
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let complete = text.ends_with('\n');
                let lines: Vec<&str> = text.split('\n').collect();
                let n = lines.len();
                for (i, line) in lines.into_iter().enumerate() {
                    let last = i + 1 == n;
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    // The last line without its newline was torn by a crash.
                    match LeaseRecord::from_line(line) {
                        Some(r) if !last || complete => {
                            table.apply(&r);
                            report.records += 1;
                        }
                        _ => report.corrupt += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        let mut store = Self {
            dir: dir.to_path_buf(),
            path,
            file,
            table,
            records_in_log: report.records + report.corrupt,
        };
        store.compact()?;
        Ok((store, report))
    }

    /// The state the log describes.
    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `records` in one write and makes them durable
    /// (`fdatasync`). Compacts afterwards when the log has grown. When this
    /// returns `Ok`, every record survives a crash.
    pub fn append(&mut self, records: &[LeaseRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = String::with_capacity(records.len() * 64);
        for r in records {
            buf.push_str(&r.to_line());
            self.table.apply(r);
        }
        self.file
            .write_all(buf.as_bytes())
            .map_err(|e| self.io_err(e))?;
        self.file.sync_data().map_err(|e| self.io_err(e))?;
        self.records_in_log += records.len();
        if self.records_in_log > self.table.len() * 2 + COMPACT_SLACK {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the log as the live state: temp file, fsync, rename,
    /// directory fsync. A crash at any point leaves either the old or the
    /// new log whole.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        let now = unix_now();
        self.table.expire_quarantine(now);
        let tmp = self.dir.join(format!("{LEASE_LOG}.tmp"));
        let tmp_err = |source| StoreError::Io {
            path: tmp.clone(),
            source,
        };
        let records = self.table.records();
        let mut buf = String::with_capacity(HEADER.len() + records.len() * 64);
        buf.push_str(HEADER);
        for r in &records {
            buf.push_str(&r.to_line());
        }
        {
            let mut f = File::create(&tmp).map_err(tmp_err)?;
            f.write_all(buf.as_bytes()).map_err(tmp_err)?;
            f.sync_all().map_err(tmp_err)?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| self.io_err(e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io_err(e))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io_err(e))?;
        self.records_in_log = records.len();
        Ok(())
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: RecordKind, ip: [u8; 4], mac: u8, until: u64) -> LeaseRecord {
        LeaseRecord {
            kind,
            ip: Ipv4Addr::from(ip),
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            until,
        }
    }

    #[test]
    fn line_round_trip_and_crc() {
        let r = rec(RecordKind::Lease, [10, 0, 0, 5], 1, 1_900_000_000);
        let line = r.to_line();
        assert_eq!(LeaseRecord::from_line(line.trim_end()), Some(r));
        let flipped = line.replace("10.0.0.5", "10.0.0.6");
        assert_eq!(LeaseRecord::from_line(flipped.trim_end()), None);
        assert_eq!(LeaseRecord::from_line("lease 10.0.0.5"), None);
        assert_eq!(LeaseRecord::from_line(""), None);
    }

    #[test]
    fn survives_reopen_and_skips_corrupt_rows() {
        let dir = tempfile::tempdir().unwrap();
        let far = unix_now() + 3600;
        {
            let (mut store, report) = LeaseStore::open(dir.path()).unwrap();
            assert_eq!(report, LoadReport::default());
            store
                .append(&[
                    rec(RecordKind::Lease, [10, 0, 0, 5], 1, far),
                    rec(RecordKind::Lease, [10, 0, 0, 6], 2, far),
                ])
                .unwrap();
            store
                .append(&[rec(RecordKind::Lease, [10, 0, 0, 7], 3, far)])
                .unwrap();
        }
        // Damage the log: a garbage row, a bad CRC and a torn last line.
        let path = dir.path().join(LEASE_LOG);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("garbage row\n");
        text.push_str(
            &rec(RecordKind::Lease, [10, 0, 0, 9], 9, far)
                .to_line()
                .replace("lease", "lease "),
        );
        let torn = rec(RecordKind::Lease, [10, 0, 0, 8], 8, far).to_line();
        text.push_str(&torn[..torn.len() - 5]);
        fs::write(&path, text).unwrap();
        let (store, report) = LeaseStore::open(dir.path()).unwrap();
        assert_eq!(report.records, 3);
        assert_eq!(report.corrupt, 3);
        let t = store.table();
        assert_eq!(
            t.by_mac(MacAddr([2, 0, 0, 0, 0, 1])).unwrap().ip,
            Ipv4Addr::new(10, 0, 0, 5)
        );
        assert_eq!(
            t.by_ip(Ipv4Addr::new(10, 0, 0, 7)).unwrap().mac,
            MacAddr([2, 0, 0, 0, 0, 3])
        );
        assert!(t.by_ip(Ipv4Addr::new(10, 0, 0, 8)).is_none());
        // Compaction on open left a clean log with no temp file behind.
        let (_, report) = LeaseStore::open(dir.path()).unwrap();
        assert_eq!(
            report,
            LoadReport {
                records: 3,
                corrupt: 0
            }
        );
        assert!(!dir.path().join(format!("{LEASE_LOG}.tmp")).exists());
    }

    #[test]
    fn compaction_keeps_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let far = unix_now() + 3600;
        let (mut store, _) = LeaseStore::open(dir.path()).unwrap();
        // Renew one lease many times: the log must not grow without bound.
        let renewals: Vec<LeaseRecord> = (0..(COMPACT_SLACK as u64 * 3))
            .map(|i| rec(RecordKind::Lease, [10, 0, 0, 5], 1, far + i))
            .collect();
        for chunk in renewals.chunks(100) {
            store.append(chunk).unwrap();
        }
        store
            .append(&[rec(RecordKind::Decline, [10, 0, 0, 6], 2, far)])
            .unwrap();
        let lines = fs::read_to_string(dir.path().join(LEASE_LOG))
            .unwrap()
            .lines()
            .count();
        assert!(lines < COMPACT_SLACK + 10, "{lines} lines");
        drop(store);
        let (store, report) = LeaseStore::open(dir.path()).unwrap();
        assert_eq!(report.corrupt, 0);
        let l = store.table().by_ip(Ipv4Addr::new(10, 0, 0, 5)).unwrap();
        assert_eq!(l.until, far + COMPACT_SLACK as u64 * 3 - 1);
        assert!(
            store
                .table()
                .quarantined(Ipv4Addr::new(10, 0, 0, 6), far - 1)
        );
    }

    #[test]
    fn lease_moves_between_macs() {
        let mut t = LeaseTable::default();
        t.apply(&rec(RecordKind::Lease, [10, 0, 0, 5], 1, 10));
        t.apply(&rec(RecordKind::Lease, [10, 0, 0, 5], 2, 20));
        assert!(t.by_mac(MacAddr([2, 0, 0, 0, 0, 1])).is_none());
        assert_eq!(t.by_mac(MacAddr([2, 0, 0, 0, 0, 2])).unwrap().until, 20);
        t.apply(&rec(RecordKind::Lease, [10, 0, 0, 6], 2, 30));
        assert!(t.by_ip(Ipv4Addr::new(10, 0, 0, 5)).is_none());
        assert_eq!(t.len(), 1);
    }
}
