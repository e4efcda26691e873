//! Kernel command line templates (`[profiles.*].args`), rendered with minijinja.
//!
//! In scope: `http` (the services node's base URL), `assets` (`{{ http }}/assets`),
//! `node.{name, mac, ip, role, fqdn, firmware, profile}` and `vars.<key>`.
//! Undefined variables are errors, both when validating and when rendering.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, context};

/// Fields of `node` a template may use.
pub const NODE_FIELDS: &[&str] = &["name", "mac", "ip", "role", "fqdn", "firmware", "profile"];

/// Top-level names a template may use.
pub const TOP_LEVEL: &[&str] = &["http", "assets", "node", "vars"];

/// What a template is rendered with.
#[derive(Debug, Clone)]
pub struct TemplateContext<'a> {
    /// Base URL of the services node.
    pub http: &'a str,
    /// Node fields.
    pub node: BTreeMap<&'static str, String>,
    /// Merged vars.
    pub vars: &'a BTreeMap<String, String>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Checks syntax and names used; returns the `vars.<key>` keys the template
/// needs, or a message saying what is wrong.
pub fn check(source: &str) -> Result<Vec<String>, String> {
    let env = environment();
    let tmpl = env
        .template_from_str(source)
        .map_err(|e| format!("template syntax error: {}", describe(&e)))?;
    let mut needed = Vec::new();
    let mut vars: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    vars.sort();
    for v in vars {
        let mut parts = v.splitn(2, '.');
        let top = parts.next().unwrap_or_default();
        let rest = parts.next();
        match (top, rest) {
            ("http" | "assets", None) => {}
            ("node", Some(field)) if NODE_FIELDS.contains(&field) => {}
            ("node", Some(field)) => {
                return Err(format!(
                    "unknown variable node.{field} (known: {})",
                    NODE_FIELDS
                        .iter()
                        .map(|f| format!("node.{f}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            ("vars", Some(key)) => needed.push(key.to_owned()),
            ("node" | "vars", None) => {
                return Err(format!(
                    "{top} is a table; use one of its fields, e.g. {{{{ {top}.name }}}}"
                ));
            }
            _ => {
                return Err(format!(
                    "unknown variable {v} (known: http, assets, node.*, vars.*)"
                ));
            }
        }
    }
    Ok(needed)
}

/// Renders a template. Fails on undefined variables.
pub fn render(source: &str, ctx: &TemplateContext<'_>) -> Result<String, String> {
    let env = environment();
    let assets = format!("{}/assets", ctx.http);
    env.render_str(
        source,
        context! { http => ctx.http, assets => assets, node => &ctx.node, vars => ctx.vars },
    )
    .map_err(|e| describe(&e))
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    if let Some(line) = e.line() {
        msg = format!("{msg} (template line {line})");
    }
    msg
}
