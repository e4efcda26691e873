//! Kernel command line templates (`[profiles.*].args`), rendered with minijinja.
//!
//! In scope: `http` (the services node's base URL), `assets` (`{{ http }}/assets`),
//! `node.{name, mac, ip, role, fqdn, firmware, profile}` and `vars.<key>`.
//! Undefined variables are errors, both when validating and when rendering.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};

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

fn environment<'source>() -> Environment<'source> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Templates are added under profile names: a name ending in .html must
    // not switch on HTML escaping of a kernel command line.
    env.set_auto_escape_callback(|_| AutoEscape::None);
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
    let mut templates = ArgsTemplates::new();
    templates.add("args", source)?;
    templates.render("args", ctx)
}

/// Args templates compiled once (one per profile), each then rendered for
/// every node of its profile. Compiling per node was 9% of loading a
/// 10,000-node inventory.
pub struct ArgsTemplates<'source> {
    env: Environment<'source>,
}

impl Default for ArgsTemplates<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'source> ArgsTemplates<'source> {
    /// No templates yet.
    pub fn new() -> Self {
        Self { env: environment() }
    }

    /// Compiles `source` under `name`; fails on a syntax error.
    pub fn add(&mut self, name: &'source str, source: &'source str) -> Result<(), String> {
        self.env
            .add_template(name, source)
            .map_err(|e| format!("template syntax error: {}", describe(&e)))
    }

    /// Renders the template added as `name`. Fails on undefined variables
    /// (and on a name that was never added).
    pub fn render(&self, name: &str, ctx: &TemplateContext<'_>) -> Result<String, String> {
        let tmpl = self.env.get_template(name).map_err(|e| describe(&e))?;
        let assets = format!("{}/assets", ctx.http);
        tmpl.render(
            context! { http => ctx.http, assets => assets, node => &ctx.node, vars => ctx.vars },
        )
        .map_err(|e| describe(&e))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(name: &str, vars: &'a BTreeMap<String, String>) -> TemplateContext<'a> {
        TemplateContext {
            http: "http://10.0.0.2:8080",
            node: BTreeMap::from([("name", name.to_owned())]),
            vars,
        }
    }

    #[test]
    fn compiled_once_renders_per_node() {
        let vars = BTreeMap::from([("k".to_owned(), "v&w".to_owned())]);
        let mut t = ArgsTemplates::new();
        // A profile name ending in .html must not turn on HTML escaping.
        t.add("p.html", "{{ assets }} n={{ node.name }} k={{ vars.k }}")
            .unwrap();
        assert_eq!(
            t.render("p.html", &ctx("a", &vars)).unwrap(),
            "http://10.0.0.2:8080/assets n=a k=v&w"
        );
        assert_eq!(
            t.render("p.html", &ctx("b", &vars)).unwrap(),
            "http://10.0.0.2:8080/assets n=b k=v&w"
        );
        assert_eq!(
            render("{{ node.name }}-{{ vars.k }}", &ctx("c", &vars)).unwrap(),
            "c-v&w"
        );
    }

    #[test]
    fn errors_as_before() {
        let vars = BTreeMap::new();
        let mut t = ArgsTemplates::new();
        assert!(
            t.add("bad", "{{ x")
                .unwrap_err()
                .starts_with("template syntax error")
        );
        t.add("p", "{{ vars.missing }}").unwrap();
        let e = t.render("p", &ctx("a", &vars)).unwrap_err();
        assert_eq!(
            e,
            render("{{ vars.missing }}", &ctx("a", &vars)).unwrap_err()
        );
        assert!(e.contains("undefined"), "{e}");
    }
}
