//! `bootlab-xtask dist`: man pages generated from the clap definitions
//! render with man(1) and groff without warnings, lab.toml(5) carries
//! docs/inventory.md, and the completions load in bash (and parse in zsh
//! and fish).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory as _;

fn inventory_md() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/inventory.md")
}

fn dist() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    bootlab_xtask::dist(dir.path(), &inventory_md()).unwrap();
    dir
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/apt-packages.txt installs it)"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `MANWIDTH=80 man -l FILE`, and groff's own warnings (-ww) for it.
fn render(page: &Path) -> String {
    let (ok, text, err) = run(Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MAN_KEEP_FORMATTING", ""));
    assert!(ok && err.is_empty(), "man -l {}: {err}", page.display());
    assert!(text.lines().count() > 5, "{}: {text}", page.display());
    let (ok, _, warnings) = run(Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page));
    assert!(
        ok && warnings.is_empty(),
        "groff warns on {}:\n{warnings}",
        page.display()
    );
    // Justified lines: one space between words, for matching.
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_man_page_renders_without_warnings() {
    let dir = dist();
    let man = dir.path().join("man");
    let bootlab = render(&man.join("bootlab.1"));
    assert!(
        bootlab.contains("bootlab - check, plan and run"),
        "{bootlab}"
    );
    for sub in bootlab_bootlab::Cli::command().get_subcommands() {
        assert!(bootlab.contains(sub.get_name()), "{}", sub.get_name());
        let page = render(&man.join(format!("bootlab-{}.1", sub.get_name())));
        assert!(
            page.contains(&format!("bootlab {}", sub.get_name())),
            "{page}"
        );
    }
    let plan = render(&man.join("bootlab-plan.1"));
    assert!(plan.contains("--kernel"), "{plan}");

    let bootlabd = render(&man.join("bootlabd.8"));
    for want in [
        "--config",
        "/etc/bootlab/lab.toml",
        "SIGHUP",
        "READY=1",
        "/readyz",
    ] {
        assert!(
            bootlabd.contains(want),
            "bootlabd(8) lacks {want}:\n{bootlabd}"
        );
    }
}

#[test]
fn lab_toml_5_is_docs_inventory_md() {
    let dir = dist();
    let page = render(&dir.path().join("man/lab.toml.5"));
    assert!(page.starts_with("LAB.TOML(5)"), "{page}");
    let md = std::fs::read_to_string(inventory_md()).unwrap();
    // Every section and every key of the tables.
    for heading in md.lines().filter_map(|l| l.strip_prefix("## ")) {
        let text = heading.replace('`', "");
        assert!(page.contains(&text), "section {text:?} missing:\n{page}");
    }
    for key in md
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
    {
        assert!(page.contains(key), "key {key} missing");
    }
    assert!(page.contains("SEE ALSO"), "{page}");
}

#[test]
fn completions_load_in_bash_and_parse_in_zsh_and_fish() {
    let dir = dist();
    let c = dir.path().join("completions");
    for (bin, typed, want) in [("bootlab", "pl", "plan"), ("bootlabd", "--con", "--config")] {
        let file = c.join(format!("{bin}.bash"));
        let script = format!(
            "source {f}; complete -p {bin}; COMP_WORDS=({bin} {typed}); COMP_CWORD=1; \
             COMP_LINE='{bin} {typed}'; COMP_POINT=${{#COMP_LINE}}; _{bin} {bin} {typed} {bin}; \
             echo \"reply: ${{COMPREPLY[*]}}\"",
            f = file.display()
        );
        let (ok, out, err) = run(Command::new("bash").args(["--norc", "-c", &script]));
        assert!(ok && err.is_empty(), "{bin}.bash: {err}");
        assert!(out.contains(&format!("-F _{bin} {bin}")), "{out}");
        assert!(out.contains(&format!("reply: {want}")), "{out}");

        let (ok, _, err) = run(Command::new("zsh").arg("-n").arg(c.join(format!("_{bin}"))));
        assert!(ok && err.is_empty(), "_{bin} (zsh): {err}");
        let (ok, _, err) = run(Command::new("fish")
            .arg("--no-execute")
            .arg(c.join(format!("{bin}.fish"))));
        assert!(ok && err.is_empty(), "{bin}.fish: {err}");
    }
}
