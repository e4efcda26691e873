//! The server-rendered page: [`StatusView`] through one minijinja template
//! (`static/status.html`, compiled in). The template's name ends in
//! `.html`, so minijinja escapes every value it prints (`&`, `<`, `>`,
//! `"`, `'`, `/`); nothing is marked safe, so no inventory string (var,
//! profile or role name, TXT record, event detail) can add markup. The
//! page carries no inline script or style: the strict
//! Content-Security-Policy in [`super`] forbids both.

use std::sync::OnceLock;

use minijinja::Environment;

use super::view::StatusView;

const TEMPLATE: &str = include_str!("../../static/status.html");
const NAME: &str = "status.html";

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // A template error is a bug caught by the unit tests; render()
        // reports it if it ever gets this far.
        let _ = env.add_template(NAME, TEMPLATE);
        env
    })
}

/// The page's HTML for `view`.
pub fn render(view: &StatusView) -> Result<String, minijinja::Error> {
    env()
        .get_template(NAME)?
        .render(minijinja::value::Serde(view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::view::{ServiceView, Snapshot};
    use bootlab_state::timeline::Event;
    use bootlab_state::{Service, Stage};
    use std::time::{Duration, SystemTime};

    /// Strings an inventory (or a client) could carry, meant to break out
    /// of text, attributes, comments and script blocks.
    pub(crate) const HOSTILE: &[&str] = &[
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(2)>",
        "'><svg onload=alert(3)>",
        "a & b &amp; c",
        "</td></tr></table><h1>x</h1>",
        "<!-- x -->",
        "javascript:alert(4)",
        "`${alert(5)}`",
        "</style><style>body{display:none}</style>",
        "\u{202e}rtl \u{0000} nul",
    ];

    fn lab(hostile: &str) -> bootlab_inventory::Inventory {
        let text = format!(
            r#"
[lab]
name = "dev"
domain = "lab.test"
[network]
cidr = "127.0.0.0/24"
mode = "nat"
gateway = "127.0.0.254"
host_ip = "127.0.0.254"
[services]
ip = "127.0.0.1"
mac = "52:54:00:77:00:fe"
[dns]
records = [{{ name = "txt", type = "TXT", value = {txt} }}]
[profiles.{h}]
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "x={{{{ vars.v }}}}"
[roles.{h}]
profile = {h}
vars = {{ v = {h}, {h} = {h} }}
[[nodes]]
name = "node-a"
role = {h}
mac = "52:54:00:77:00:10"
ip = "127.0.0.10"
"#,
            h = toml_string(hostile),
            // TXT text is unquoted words or balanced "quoted strings".
            txt = toml_string(&hostile.replace(['"', '\\'], ""))
        );
        bootlab_inventory::parse(&text, "hostile.toml".as_ref())
            .unwrap_or_else(|e| panic!("{hostile:?}: {e}\n{text}"))
    }

    fn toml_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn snapshot(detail: &str) -> Snapshot {
        let mac = "52:54:00:77:00:10".parse().unwrap();
        let stranger = "52:54:00:77:00:99".parse().unwrap();
        let t = bootlab_state::Timeline::default();
        for m in [mac, stranger] {
            t.record(
                m,
                Event {
                    at: at(0),
                    service: Service::Dhcp,
                    kind: "ack".into(),
                    detail: Some(detail.to_owned()),
                    path: None,
                    bytes: None,
                    stage: Some(Stage::Dhcp),
                },
            );
            t.record(
                m,
                Event {
                    at: at(2),
                    service: Service::Http,
                    kind: "script".into(),
                    detail: None,
                    path: Some(format!("/boot.ipxe?{detail}")),
                    bytes: Some(10),
                    stage: Some(Stage::Script),
                },
            );
        }
        Snapshot {
            machines: t.machines(),
            services: vec![ServiceView {
                name: "DHCP",
                counters: vec![],
            }],
            balancers: Some(serde_json::json!([{
                "name": detail, "listen": detail,
                "backends": [{ "name": detail, "addr": detail, "state": detail,
                               "last_check_error": detail }]
            }])),
            egress: Some(serde_json::json!({
                "denied": [{ "addr": detail, "protocol": detail, "port": 443 }],
                "counters": [{ "name": detail, "packets": 1, "bytes": 2 }],
            })),
        }
    }

    /// Every hostile string shows up only escaped: no `<` from data, and
    /// every quote inside attribute values is an entity.
    #[test]
    fn every_inventory_and_event_string_is_escaped() {
        for h in HOSTILE {
            let inv = lab(h);
            let view = StatusView::build(&inv, &snapshot(h), at(5));
            let html = render(&view).unwrap();
            let text = html.as_str();
            for needle in [
                "<script>alert",
                "<img",
                "<svg",
                "<h1>x",
                "<!-- x",
                "<style>",
            ] {
                assert!(!text.contains(needle), "{h:?} leaked {needle:?}:\n{text}");
            }
            assert_no_inline(text);
            // The only tags are the template's own.
            for tag in tags(text) {
                assert!(
                    TEMPLATE_TAGS.contains(&tag.as_str()),
                    "{h:?}: tag <{tag}> in:\n{text}"
                );
            }
            let escaped = minijinja_escape(h);
            let count = text.matches(escaped.as_str()).count();
            // Role, profile, a var's key and value, the TXT record, the
            // event path, the DHCP detail, balancer and egress fields.
            assert!(
                count >= 8,
                "{h:?} as {escaped:?} shown {count} times:\n{text}"
            );
        }
    }

    const TEMPLATE_TAGS: &[&str] = &[
        "!DOCTYPE", "html", "head", "meta", "title", "link", "script", "noscript", "body",
        "header", "h1", "span", "small", "p", "time", "main", "section", "h2", "table", "caption",
        "thead", "tr", "th", "tbody", "details", "summary", "dl", "dt", "dd", "ol", "li", "td",
        "strong", "ul", "footer", "a",
    ];

    /// Every tag name opened in `html`.
    fn tags(html: &str) -> Vec<String> {
        html.split('<')
            .skip(1)
            .filter(|s| !s.starts_with('/'))
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                    .collect::<String>()
                    .to_ascii_lowercase()
            })
            .map(|t| {
                if t == "!doctype" {
                    "!DOCTYPE".to_owned()
                } else {
                    t
                }
            })
            .collect()
    }

    /// minijinja's HTML escaping, written out independently.
    fn minijinja_escape(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#x27;"),
                '/' => out.push_str("&#x2f;"),
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn the_page_has_no_inline_script_style_or_handlers() {
        let inv = lab("plain");
        let html = render(&StatusView::build(&inv, &snapshot("x"), at(5))).unwrap();
        assert_no_inline(&html);
    }

    /// The text of every tag (`<` to `>`) in `html`. Data is escaped, so
    /// these are the template's tags and nothing else.
    fn tag_texts(html: &str) -> Vec<&str> {
        html.split('<')
            .skip(1)
            .filter_map(|s| s.split_once('>').map(|(tag, _)| tag))
            .collect()
    }

    /// The attribute names of a tag's text (`a href="x y" id=z` ->
    /// `href`, `id`). Values are double-quoted or bare; data in them is
    /// escaped, so a quoted value has no `"` inside.
    fn attribute_names(tag: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = tag.trim_start_matches(|c: char| !c.is_whitespace());
        loop {
            rest = rest.trim_start();
            if rest.is_empty() || rest == "/" {
                return names;
            }
            let end = rest
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(rest.len());
            names.push(rest[..end].to_owned());
            rest = &rest[end..];
            if let Some(v) = rest.strip_prefix('=') {
                rest = match v.strip_prefix('"') {
                    Some(q) => q.split_once('"').map_or("", |(_, after)| after),
                    None => v.trim_start_matches(|c: char| !c.is_whitespace()),
                };
            }
        }
    }

    #[test]
    fn attribute_names_skip_quoted_values() {
        assert_eq!(
            attribute_names(r#"tr id="a b onerror=x" class=c data-x="" hidden"#),
            ["id", "class", "data-x", "hidden"]
        );
    }

    /// No inline script, inline style, `style=` or `on...=` attribute, or
    /// `javascript:` URL: what the CSP would block must not be needed.
    pub(crate) fn assert_no_inline(html: &str) {
        let tags = tag_texts(html);
        let scripts: Vec<&&str> = tags.iter().filter(|t| t.starts_with("script")).collect();
        assert_eq!(
            scripts,
            [&"script src=\"/static/status.js\" defer"],
            "only the external script"
        );
        for t in &tags {
            let lower = t.to_ascii_lowercase();
            assert!(!lower.starts_with("style"), "<{t}>");
            assert!(!lower.contains("javascript:"), "<{t}>");
            for name in attribute_names(&lower) {
                assert!(name != "style" && !name.starts_with("on"), "<{t}>");
            }
        }
    }

    #[test]
    fn rows_carry_the_timeline_and_status() {
        let inv = lab("plain");
        let html = render(&StatusView::build(&inv, &snapshot("file=-"), at(5))).unwrap();
        assert!(html.contains("<tr id=\"m-525400770010\" class=\"status-booting\" data-mac=\"52:54:00:77:00:10\" data-stage=\"script\""), "{html}");
        assert!(
            html.contains(
                "<li class=\"done\" data-stage=\"dhcp\"><span class=\"mark\">✓</span> DHCP <time"
            ),
            "{html}"
        );
        assert!(html.contains("<li class=\"skipped\" data-stage=\"tftp\"><span class=\"mark\">–</span> loader</li>"), "{html}");
        assert!(html.contains("<li class=\"current\" data-stage=\"script\"><span class=\"mark\">▶</span> script <time datetime=\"2023-11-14T22:13:22.000Z\">+2.0 s</time></li>"), "{html}");
        assert!(html.contains("<li class=\"pending\" data-stage=\"kernel\"><span class=\"mark\">·</span> kernel</li>"), "{html}");
        assert!(
            html.contains("<time datetime=\"2023-11-14T22:13:22.000Z\">3 s ago</time>"),
            "{html}"
        );
        // The stranger: after the nodes, marked unknown.
        let node = html.find("m-525400770010").unwrap();
        let stranger = html.find("m-525400770099").unwrap();
        assert!(node < stranger);
        assert!(
            html.contains("class=\"status-unknown\" data-mac=\"52:54:00:77:00:99\""),
            "{html}"
        );
        assert!(html.contains("not in the inventory"), "{html}");
        assert!(html.contains("<section id=\"balancers-section\""), "{html}");
        assert!(html.contains("<section id=\"egress-section\""), "{html}");
    }

    #[test]
    fn a_stalled_node_says_so_and_sections_without_reports_are_left_out() {
        let inv = lab("plain");
        let mut snap = snapshot("file=undionly.kpxe");
        snap.balancers = None;
        snap.egress = None;
        let html = render(&StatusView::build(&inv, &snap, at(2 + 121))).unwrap();
        assert!(html.contains("class=\"status-stalled\""), "{html}");
        assert!(html.contains("<strong class=\"warn\">⚠ stalled at script for 2 min 1 s (usual: up to 2 min 0 s)</strong>"), "{html}");
        assert!(!html.contains("balancers-section"), "{html}");
        assert!(!html.contains("egress-section"), "{html}");
    }

    #[test]
    fn a_node_never_seen_has_a_row() {
        let inv = lab("plain");
        let html = render(&StatusView::build(&inv, &Snapshot::default(), at(0))).unwrap();
        assert!(
            html.contains("<tr id=\"m-525400770010\" class=\"status-unseen\""),
            "{html}"
        );
        assert!(html.contains("not seen yet"), "{html}");
        assert!(html.contains("0 of 1 nodes seen"), "{html}");
    }
}
