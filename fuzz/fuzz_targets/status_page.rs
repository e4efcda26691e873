//! The status page's view and HTML: arbitrary event text (kinds, details,
//! paths, as clients can make them) and arbitrary `balancers` / `egress`
//! report JSON go through `StatusView::build` and the template. No panic;
//! the HTML has only the template's own tags (no data made markup) and one
//! script, the external one.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bootlab_http::status::page;
use bootlab_http::status::view::{Snapshot, StatusView};
use bootlab_inventory::{Inventory, MacAddr};
use bootlab_state::timeline::Event;
use bootlab_state::{Service, Stage, Timeline};
use libfuzzer_sys::fuzz_target;

fn inventory() -> &'static Inventory {
    static INV: OnceLock<Inventory> = OnceLock::new();
    INV.get_or_init(|| {
        bootlab_inventory::parse(
            include_str!("../../config/dev.toml"),
            "dev.toml".as_ref(),
        )
        .expect("dev.toml parses")
    })
}

const TAGS: &[&str] = &[
    "!DOCTYPE", "html", "head", "meta", "title", "link", "script", "noscript", "body", "header",
    "h1", "span", "small", "p", "time", "main", "section", "h2", "table", "caption", "thead",
    "tr", "th", "tbody", "details", "summary", "dl", "dt", "dd", "ol", "li", "td", "strong",
    "ul", "footer", "a",
];

const STAGES: [Option<Stage>; 7] = [
    None,
    Some(Stage::Dhcp),
    Some(Stage::Tftp),
    Some(Stage::Script),
    Some(Stage::Kernel),
    Some(Stage::Initrd),
    Some(Stage::Config),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // events \x01 balancers JSON \x01 egress JSON; events are split by
    // \x02, an event's kind, detail and path by \x03.
    let mut parts = text.split('\u{1}');
    let events = parts.next().unwrap_or_default();
    let t = Timeline::default();
    let macs: [MacAddr; 3] = [
        "52:54:00:77:00:10".parse().unwrap(),
        "52:54:00:77:00:11".parse().unwrap(),
        "52:54:00:77:00:99".parse().unwrap(),
    ];
    for (i, chunk) in events.split('\u{2}').take(64).enumerate() {
        let mut f = chunk.splitn(3, '\u{3}');
        let (kind, detail, path) = (f.next(), f.next(), f.next());
        let b = chunk.bytes().next().unwrap_or(0) as usize;
        t.record(
            macs[b % 3],
            Event {
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + (b * i) as u64),
                service: [Service::Dhcp, Service::Tftp, Service::Http, Service::Lb][b % 4],
                kind: kind.unwrap_or_default().to_owned(),
                detail: detail.map(str::to_owned),
                path: path.map(str::to_owned),
                bytes: Some(b as u64),
                stage: STAGES[(b / 4) % 7],
            },
        );
    }
    let json = |s: Option<&str>| s.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    let snap = Snapshot {
        machines: t.machines(),
        services: Vec::new(),
        balancers: json(parts.next()),
        egress: json(parts.next()),
    };
    let view = StatusView::build(
        inventory(),
        &snap,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_500),
    );
    let html = page::render(&view).expect("the template renders any view");
    let mut scripts = 0;
    for tag in html.split('<').skip(1) {
        if tag.starts_with('/') {
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
            .collect();
        assert!(TAGS.contains(&name.as_str()), "tag <{name}> from data in:\n{html}");
        scripts += usize::from(name == "script");
    }
    assert_eq!(scripts, 1, "{html}");
    serde_json::to_string(&view).expect("the view serializes");
});
