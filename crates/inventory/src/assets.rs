//! Which boot files the profiles need that an assets directory lacks.
//!
//! bootlabd checks its `services.assets_dir` at start and on reload;
//! `bootlab check` checks `libvirt.assets_source` on the host. A profile
//! needs its kernel and initrds, and every file its nodes' rendered args
//! point at under the assets URL (ignition configs, root filesystems).

use std::collections::BTreeSet;
use std::path::Path;

use crate::compiled::Inventory;

/// A file a profile needs that is not under the assets root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingAsset {
    /// The profile that needs it.
    pub profile: String,
    /// Why it is needed: `template`, `kernel`, `initrd`, or `args of node <name>`.
    pub needed_as: String,
    /// The path under the assets root.
    pub path: String,
}

impl std::fmt::Display for MissingAsset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "profile {:?}: {} {:?} is missing",
            self.profile, self.needed_as, self.path
        )
    }
}

impl Inventory {
    /// Every file the nodes' profiles need that `root` lacks, sorted.
    pub fn missing_assets(&self, root: &Path) -> Vec<MissingAsset> {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let prefix = format!("{}/", self.assets_url());
        let mut check = |profile: &str, needed_as: String, path: &str| {
            if seen.insert((profile.to_owned(), path.to_owned())) && !root.join(path).is_file() {
                out.insert(MissingAsset {
                    profile: profile.to_owned(),
                    needed_as,
                    path: path.to_owned(),
                });
            }
        };
        for n in self.nodes() {
            let b = &n.boot;
            if let Some(t) = self
                .profiles()
                .get(&b.name)
                .and_then(|p| p.template.as_ref())
            {
                check(&b.name, "template".into(), t);
            }
            check(&b.name, "kernel".into(), &b.kernel);
            for i in &b.initrd {
                check(&b.name, "initrd".into(), i);
            }
            for word in b.args.split_whitespace() {
                let Some(at) = word.find(&prefix) else {
                    continue;
                };
                let path = word[at + prefix.len()..]
                    .split(['?', '#'])
                    .next()
                    .unwrap_or_default();
                if !path.is_empty() && !path.split('/').any(|s| s == "..") {
                    check(&b.name, format!("args of node {}", n.name), path);
                }
            }
        }
        out.into_iter().collect()
    }
}
