//! Boot scripts and configs rendered per node from its profile: iPXE scripts,
//! GRUB and pxelinux configs. The built-in templates live in
//! `boot-assets/templates/` and are compiled once; a profile may name its
//! own (`template`, a file under the assets root, for its loader's script:
//! iPXE for `ipxe`, grub.cfg for `grub`), read and compiled when an
//! inventory is loaded ([`ScriptTemplates::load`]), with file:line errors.
//! [`BootScripts`] renders every node's three scripts at load, so serving
//! one is a lookup that cannot fail.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use bootlab_inventory::{HostRef, Inventory, Loader, MacAddr, Node};
use minijinja::{Environment, UndefinedBehavior, context};

const IPXE: &str = include_str!("../../../boot-assets/templates/boot.ipxe.j2");
const GRUB: &str = include_str!("../../../boot-assets/templates/grub.cfg.j2");
const PXELINUX: &str = include_str!("../../../boot-assets/templates/pxelinux.cfg.j2");

/// Which kind of script or config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptKind {
    /// `boot.ipxe`
    Ipxe,
    /// `grub.cfg-01-<mac>` / `grub/grub.cfg`
    Grub,
    /// `pxelinux.cfg/01-<mac>`
    Pxelinux,
}

/// Why a script could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("rendering {kind:?} for {node}: {reason}")]
pub struct RenderError {
    /// Which script.
    pub kind: ScriptKind,
    /// Which node.
    pub node: String,
    /// What failed.
    pub reason: String,
}

/// The file name iPXE gives an initrd fetched from `path`: its last component.
pub fn initrd_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ScriptKind {
    /// The built-in template's name.
    fn template(self) -> &'static str {
        match self {
            Self::Ipxe => "boot.ipxe",
            Self::Grub => "grub.cfg",
            Self::Pxelinux => "pxelinux.cfg",
        }
    }
}

/// The built-in templates, compiled once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in [
        ("boot.ipxe", IPXE),
        ("grub.cfg", GRUB),
        ("pxelinux.cfg", PXELINUX),
    ] {
        // The built-ins are part of the binary; a syntax error in one is a
        // build defect that every test of this module catches.
        if let Err(e) = env.add_template(name, source) {
            panic!("built-in template {name} does not compile: {e}");
        }
    }
    env
});

/// Why a profile's own template cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("profiles.{profile}.template: cannot read {}: {source}", path.display())]
    Read {
        /// The profile.
        profile: String,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid template.
    #[error("profiles.{profile}.template: {}:{line}: {message}", path.display())]
    Syntax {
        /// The profile.
        profile: String,
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line (1 when minijinja gives none).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The template compiled but does not render for a node.
    #[error("profiles.{profile}.template: {}: {reason}", path.display())]
    Render {
        /// The profile.
        profile: String,
        /// The file.
        path: std::path::PathBuf,
        /// The node and what failed.
        reason: String,
    },
}

/// What `bootlab check` does with [`ScriptTemplates::load`]'s result: a
/// missing file is one of the missing assets (a warning), any other
/// problem an error.
pub trait FilterMissing {
    /// The error, unless it is a missing file.
    fn filter_missing(self) -> Result<(), TemplateError>;
}

impl FilterMissing for Result<ScriptTemplates, TemplateError> {
    fn filter_missing(self) -> Result<(), TemplateError> {
        match self {
            Ok(_) => Ok(()),
            Err(TemplateError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The script kind a profile's own template replaces.
pub fn template_kind(loader: Loader) -> ScriptKind {
    match loader {
        Loader::Ipxe => ScriptKind::Ipxe,
        Loader::Grub | Loader::ShimGrub => ScriptKind::Grub,
    }
}

/// The templates one inventory renders with: the built-ins, and each
/// profile's own when it names one.
#[derive(Debug, Default)]
pub struct ScriptTemplates {
    /// Profile name -> (its file, compiled template).
    custom: BTreeMap<String, (std::path::PathBuf, Environment<'static>)>,
}

impl ScriptTemplates {
    /// The built-ins only (what `bootlab render` uses without the assets).
    pub fn builtin() -> Self {
        Self::default()
    }

    /// Reads and compiles every profile's own template from `root` (the
    /// assets directory), then renders it once for every node of the
    /// profile, so a template that cannot render is refused at load.
    pub fn load(inv: &Inventory, root: &Path) -> Result<Self, TemplateError> {
        let mut custom = BTreeMap::new();
        for (name, p) in inv.profiles() {
            let Some(rel) = &p.template else { continue };
            let path = root.join(rel);
            let source = std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                profile: name.clone(),
                path: path.clone(),
                source,
            })?;
            let mut env = Environment::new();
            env.set_undefined_behavior(UndefinedBehavior::Strict);
            env.add_template_owned(rel.clone(), source)
                .map_err(|e| TemplateError::Syntax {
                    profile: name.clone(),
                    path: path.clone(),
                    line: e.line().unwrap_or(1),
                    message: e
                        .detail()
                        .map_or_else(|| e.kind().to_string(), str::to_owned),
                })?;
            custom.insert(name.clone(), (path, env));
        }
        let this = Self { custom };
        for n in inv.nodes() {
            if let Some((path, _)) = this.custom.get(&n.boot.name) {
                let kind = template_kind(n.boot.loader);
                this.render(inv, n, kind)
                    .map_err(|e| TemplateError::Render {
                        profile: n.boot.name.clone(),
                        path: path.clone(),
                        reason: format!("node {}: {}", n.name, e.reason),
                    })?;
            }
        }
        Ok(this)
    }

    /// Renders `kind` for `node`: its profile's own template when it has
    /// one for this kind, else the built-in.
    pub fn render(
        &self,
        inv: &Inventory,
        node: &Node,
        kind: ScriptKind,
    ) -> Result<String, RenderError> {
        let own = self
            .custom
            .get(&node.boot.name)
            .filter(|_| template_kind(node.boot.loader) == kind)
            .and_then(|(_, env)| {
                inv.profiles()
                    .get(&node.boot.name)
                    .and_then(|p| p.template.as_deref())
                    .and_then(|rel| env.get_template(rel).ok())
            });
        render_with(inv, node, kind, own)
    }
}

/// Renders `kind` for `node` with the built-in template.
pub fn render(inv: &Inventory, node: &Node, kind: ScriptKind) -> Result<String, RenderError> {
    render_with(inv, node, kind, None)
}

fn render_with(
    inv: &Inventory,
    node: &Node,
    kind: ScriptKind,
    own: Option<minijinja::Template<'_, '_>>,
) -> Result<String, RenderError> {
    let err = |reason: String| RenderError {
        kind,
        node: node.name.clone(),
        reason,
    };
    let profile = &node.boot;
    let names: Vec<String> = profile
        .initrd
        .iter()
        .map(|p| initrd_name(p).to_owned())
        .collect();
    let tmpl = match own {
        Some(t) => t,
        None => TEMPLATES
            .get_template(kind.template())
            .map_err(|e| err(e.to_string()))?,
    };
    // Where GRUB fetches kernel and initrd: over HTTP from the assets URL,
    // or over TFTP (whose root is the assets dir) for the Secure Boot chain,
    // whose signed GRUB has no HTTP and may load no module.
    let (grub_proto, grub_root) = match profile.loader {
        Loader::ShimGrub => ("tftp", format!("(tftp,{})", inv.services().ip)),
        Loader::Ipxe | Loader::Grub => (
            "http",
            format!(
                "(http,{}:{})/assets",
                inv.services().ip,
                inv.services().listen.http.port()
            ),
        ),
    };
    let mut out = tmpl
        .render(context! {
            grub_proto => grub_proto,
            grub_root => grub_root,
            name => &node.name,
            mac => node.mac.to_string(),
            profile => &profile.name,
            http => inv.http_base(),
            assets => inv.assets_url(),
            host => inv.services().ip.to_string(),
            port => inv.services().listen.http.port(),
            kernel => &profile.kernel,
            initrd => &profile.initrd,
            initrd_names => names,
            args => &profile.args,
        })
        .map_err(|e| err(e.to_string()))?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Every node's scripts, rendered once per inventory (at load and reload).
#[derive(Debug, Clone, Default)]
pub struct BootScripts {
    /// Per node (same index as `Inventory::nodes`): iPXE, GRUB, pxelinux.
    by_node: Vec<[Arc<str>; 3]>,
}

impl BootScripts {
    /// Renders the three scripts of every node of `inv` with the built-in
    /// templates.
    pub fn render(inv: &Inventory) -> Result<Self, RenderError> {
        Self::render_with(inv, &ScriptTemplates::builtin())
    }

    /// Renders the three scripts of every node of `inv` with `templates`.
    pub fn render_with(inv: &Inventory, templates: &ScriptTemplates) -> Result<Self, RenderError> {
        let by_node = inv
            .nodes()
            .iter()
            .map(|n| {
                Ok([
                    templates.render(inv, n, ScriptKind::Ipxe)?.into(),
                    templates.render(inv, n, ScriptKind::Grub)?.into(),
                    templates.render(inv, n, ScriptKind::Pxelinux)?.into(),
                ])
            })
            .collect::<Result<_, RenderError>>()?;
        Ok(Self { by_node })
    }

    /// The node with `mac` and its script of `kind`.
    pub fn for_mac<'i>(
        &self,
        inv: &'i Inventory,
        mac: MacAddr,
        kind: ScriptKind,
    ) -> Option<(&'i Node, Arc<str>)> {
        let host = inv.host_by_mac(mac)?;
        let HostRef::Node(i) = host.kind else {
            return None;
        };
        let scripts = self.by_node.get(i)?;
        let node = inv.nodes().get(i)?;
        let k = match kind {
            ScriptKind::Ipxe => 0,
            ScriptKind::Grub => 1,
            ScriptKind::Pxelinux => 2,
        };
        Some((node, scripts[k].clone()))
    }
}

/// The iPXE script for a MAC bootlab does not know.
pub fn unknown_machine_ipxe(mac: &str) -> String {
    // The MAC is echoed into a script: keep only characters a MAC can have.
    let safe: String = mac
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-'))
        .take(32)
        .collect();
    format!("#!ipxe\necho bootlab: unknown machine {safe}\nexit\n")
}

/// The iPXE script for a client whose source address identifies no machine:
/// it asks again with its MAC.
pub fn chain_by_mac_ipxe(inv: &Inventory) -> String {
    format!("#!ipxe\nchain {}?mac=${{net0/mac}}\n", ipxe_script_url(inv))
}

/// The URL iPXE clients are sent to for their script.
pub fn ipxe_script_url(inv: &Inventory) -> String {
    format!("{}/boot.ipxe", inv.http_base())
}

/// A per-MAC config file name, as served over TFTP and HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtualFile {
    /// `boot.ipxe` (identified by source address).
    BootIpxe,
    /// `grub/grub.cfg` (identified by source address).
    GrubBySource,
    /// `grub.cfg-01-<mac>`.
    GrubForMac(MacAddr),
    /// `pxelinux.cfg/01-<mac>`.
    PxelinuxForMac(MacAddr),
}

impl VirtualFile {
    /// Recognises the virtual file names of the wire contract (after any
    /// leading `/` is removed).
    pub fn parse(path: &str) -> Option<Self> {
        let p = path.trim_start_matches('/');
        if p == "boot.ipxe" {
            return Some(Self::BootIpxe);
        }
        if p == "grub/grub.cfg" {
            return Some(Self::GrubBySource);
        }
        let mac_of = |rest: &str| -> Option<MacAddr> {
            let rest = rest.strip_prefix("01-")?;
            if rest.len() != 17 || rest.contains(':') {
                return None;
            }
            rest.parse().ok()
        };
        if let Some(rest) = p.strip_prefix("grub.cfg-") {
            return mac_of(rest).map(Self::GrubForMac);
        }
        if let Some(rest) = p.strip_prefix("pxelinux.cfg/") {
            return mac_of(rest).map(Self::PxelinuxForMac);
        }
        None
    }

    /// The script kind this file renders.
    pub fn kind(self) -> ScriptKind {
        match self {
            Self::BootIpxe => ScriptKind::Ipxe,
            Self::GrubBySource | Self::GrubForMac(_) => ScriptKind::Grub,
            Self::PxelinuxForMac(_) => ScriptKind::Pxelinux,
        }
    }

    /// The MAC named in the file name, if any.
    pub fn mac(self) -> Option<MacAddr> {
        match self {
            Self::GrubForMac(m) | Self::PxelinuxForMac(m) => Some(m),
            Self::BootIpxe | Self::GrubBySource => None,
        }
    }
}
