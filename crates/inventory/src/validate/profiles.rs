//! `[profiles]`: loaders, asset paths, args templates; then each node's
//! args rendered once (one error per template, naming the nodes it fails for).

use std::collections::BTreeMap;

use super::nodes::NodeDraft;
use super::{Checker, node_context};
use crate::diag::FieldPath;
use crate::model::*;
use crate::template;
use crate::wire;

const LOADERS: [(&str, Loader); 3] = [
    ("ipxe", Loader::Ipxe),
    ("grub", Loader::Grub),
    ("shim-grub", Loader::ShimGrub),
];

/// A checked profile and the `vars.<key>` its args need.
pub(crate) struct ProfileDraft {
    pub profile: Profile,
    /// None when the template did not check.
    pub needs: Option<Vec<String>>,
}

/// `[profiles]`
pub(crate) fn profiles(
    c: &mut Checker<'_>,
    w: &BTreeMap<String, wire::ProfileSection>,
) -> BTreeMap<String, ProfileDraft> {
    let mut out = BTreeMap::new();
    for (name, prof) in w {
        let pp = FieldPath::of("profiles").key(name);
        let loader = c.one_of(&pp.key("loader"), &prof.loader, &LOADERS);
        c.asset_path(&pp.key("kernel"), &prof.kernel);
        for (i, ird) in prof.initrd.iter().enumerate() {
            c.asset_path(&pp.key("initrd").idx(i), ird);
        }
        if let Some(t) = &prof.template {
            c.asset_path(&pp.key("template"), t);
        }
        let needs = match template::check(&prof.args) {
            Ok(needs) => Some(needs),
            Err(e) => {
                c.err(
                    &pp.key("args"),
                    e,
                    "in scope: {{ http }}, {{ assets }}, {{ node.name|mac|ip|role|fqdn }}, {{ vars.<key> }}",
                );
                None
            }
        };
        out.insert(
            name.clone(),
            ProfileDraft {
                profile: Profile {
                    name: name.clone(),
                    loader: loader.unwrap_or(Loader::Ipxe),
                    kernel: prof.kernel.clone(),
                    initrd: prof.initrd.clone(),
                    args: prof.args.clone(),
                    template: prof.template.clone(),
                },
                needs,
            },
        );
    }
    out
}

/// A node lacking vars: its index, name as written, role.
type Lacking = (usize, String, Option<String>);

/// "a, b, c" or "a, b, c and 7 more".
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut s = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// Renders every node's args; problems are reported once per template
/// (missing vars once per profile and set of missing keys).
pub(crate) fn render_boot(
    c: &mut Checker<'_>,
    nodes: Vec<(usize, NodeDraft)>,
    profiles: &BTreeMap<String, ProfileDraft>,
    http: &str,
) -> Vec<Node> {
    let mut out = Vec::with_capacity(nodes.len());
    // (profile, missing keys) -> nodes; profile -> (first error, nodes)
    let mut missing: BTreeMap<(String, Vec<String>), Vec<Lacking>> = BTreeMap::new();
    let mut failed: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    // Each profile's args compiled once (they checked above, so a failure
    // here is the same error every node of the profile would get).
    let mut templates = template::ArgsTemplates::new();
    let mut uncompiled: BTreeMap<&str, String> = BTreeMap::new();
    for (name, draft) in profiles {
        if draft.needs.is_some() {
            if let Err(e) = templates.add(name, &draft.profile.args) {
                uncompiled.insert(name, e);
            }
        }
    }
    for (i, n) in nodes {
        // An unknown profile was reported where it was named.
        let Some(draft) = profiles.get(&n.profile) else {
            continue;
        };
        let Some(needs) = &draft.needs else { continue };
        let lacking: Vec<String> = needs
            .iter()
            .filter(|k| !n.vars.contains_key(*k))
            .cloned()
            .collect();
        if !lacking.is_empty() {
            missing
                .entry((n.profile.clone(), lacking))
                .or_default()
                .push((i, n.written_name.clone(), n.role.clone()));
            continue;
        }
        let ctx = node_context(&n, http);
        let rendered = match uncompiled.get(n.profile.as_str()) {
            Some(e) => Err(e.clone()),
            None => templates.render(&n.profile, &ctx),
        };
        match rendered {
            Ok(mut args) => {
                args.shrink_to_fit(); // kept per node: not the renderer's spare capacity
                let p = &draft.profile;
                let boot = BootProfile {
                    name: p.name.clone(),
                    loader: p.loader,
                    kernel: p.kernel.clone(),
                    initrd: p.initrd.clone(),
                    args,
                };
                out.push(n.finish(boot));
            }
            Err(e) => {
                failed
                    .entry(n.profile.clone())
                    .or_insert_with(|| (e, Vec::new()))
                    .1
                    .push(n.written_name.clone());
            }
        }
    }
    for ((profile, keys), who) in missing {
        let (first, _, _) = &who[0];
        let names: Vec<&str> = who.iter().map(|(_, n, _)| n.as_str()).collect();
        let roles: Vec<&str> = {
            let mut r: Vec<&str> = who.iter().filter_map(|(_, _, r)| r.as_deref()).collect();
            r.sort_unstable();
            r.dedup();
            r
        };
        let keys = keys
            .iter()
            .map(|k| format!("vars.{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let whose = if names.len() == 1 {
            format!("node {:?} sets", names[0])
        } else {
            format!("nodes {} set", name_list(&names))
        };
        let help = if roles.is_empty() {
            "add them to the nodes' vars tables".to_owned()
        } else {
            format!(
                "add them to the vars of role{} {} or of each node",
                if roles.len() == 1 { "" } else { "s" },
                roles.join(", ")
            )
        };
        c.err(
            &FieldPath::of("nodes").idx(*first),
            format!("profile {profile:?} uses {keys} but {whose} no such var"),
            &help,
        );
    }
    for (profile, (e, names)) in failed {
        c.err(
            &FieldPath::of("profiles").key(&profile).key("args"),
            format!(
                "rendering failed for {} node{} ({}): {e}",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                name_list(&names.iter().map(String::as_str).collect::<Vec<_>>())
            ),
            "fix the template or the nodes' vars",
        );
    }
    out
}

/// The validated profiles, without their drafts.
pub(crate) fn finish(profiles: BTreeMap<String, ProfileDraft>) -> BTreeMap<String, Profile> {
    profiles.into_iter().map(|(k, d)| (k, d.profile)).collect()
}
