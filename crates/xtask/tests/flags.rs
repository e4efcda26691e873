//! Every `--flag` that the docs, the shipped configs' comments, the
//! systemd unit, the sources' messages and the help texts give to a
//! `bootlab` or `bootlabd` command line exists in the clap definitions
//! (issue 17: `config/isolated-lab.toml` suggested a `bootlabd --dry-run`
//! that never existed).
//!
//! A command line is `bootlab[d]` followed by words, inside a markdown code
//! span or code block, a `#` comment of a TOML or unit file, a backtick span
//! of a Rust source, or anywhere in a help text. For `bootlab` the words
//! walk down the subcommands (`egress show`); each `--flag` must be an
//! argument of the command reached (globals and `--help` included). Words
//! after `|`, `;`, `&&` or `#` belong to another command.

use std::path::{Path, PathBuf};

use clap::CommandFactory as _;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One `--flag` given to a command line, and where.
#[derive(Debug)]
struct Use {
    place: String,
    line: String,
    bin: &'static str,
    path: Vec<String>,
    flag: String,
}

fn is_flag_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// The `--flags` inside one token (`--kernel/--modules`, `[--ipxe]`,
/// `--output=json`).
fn flags_in(token: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = token;
    while let Some(i) = rest.find("--") {
        let after = &rest[i + 2..];
        let name: String = after.chars().take_while(|&c| is_flag_char(c)).collect();
        if name.starts_with(|c: char| c.is_ascii_lowercase()) {
            out.push(name.trim_end_matches('-').to_string());
        }
        rest = &after[name.len()..];
    }
    out
}

/// The command lines in one segment of text (a code span, a comment...).
fn uses_in(segment: &str, place: &str, bootlab: &clap::Command, out: &mut Vec<Use>) {
    let words: Vec<&str> = segment.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let bin = match w.trim_start_matches(['`', '(', '"', '\'']) {
            "bootlab" => "bootlab",
            "bootlabd" => "bootlabd",
            _ => continue,
        };
        let mut cmd = bootlab.clone();
        let mut path = Vec::new();
        let mut started = false;
        for t in &words[i + 1..] {
            if matches!(*t, "|" | ";" | "&&" | "||" | "#") || t.starts_with('#') {
                break;
            }
            if *t == "--" && !started {
                // `cargo run --bin bootlab -- explain ...`
                continue;
            }
            started = true;
            if t.starts_with("--") || t.starts_with("[--") {
                for flag in flags_in(t) {
                    out.push(Use {
                        place: place.to_string(),
                        line: segment.trim().to_string(),
                        bin,
                        path: path.clone(),
                        flag,
                    });
                }
                continue;
            }
            if bin == "bootlab" {
                let word = t.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
                if let Some(sub) = cmd.find_subcommand(word).cloned() {
                    path.push(word.to_string());
                    cmd = sub;
                } else if path.is_empty() {
                    // prose ("bootlab does ..."), not a command line
                    break;
                }
            }
            if t.ends_with('`') {
                break;
            }
        }
    }
}

/// Code spans and code-block lines of a markdown text.
fn markdown_segments(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            out.push(line.to_string());
        } else {
            out.extend(backtick_spans(line));
        }
    }
    out
}

fn backtick_spans(line: &str) -> Vec<String> {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// Comment text of a TOML or unit file (from the first `#`).
fn comment_segments(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.find('#').map(|i| l[i + 1..].to_string()))
        .collect()
}

fn every_long(cmd: &clap::Command, out: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        if let Some(l) = a.get_long() {
            out.push(l.to_string());
        }
    }
    for s in cmd.get_subcommands() {
        every_long(s, out);
    }
}

fn built(mut cmd: clap::Command) -> clap::Command {
    cmd.build();
    cmd
}

fn has_flag(root: &clap::Command, path: &[String], flag: &str) -> bool {
    let mut cmd = root;
    for p in path {
        match cmd.find_subcommand(p) {
            Some(s) => cmd = s,
            None => return false,
        }
    }
    cmd.get_arguments().any(|a| a.get_long() == Some(flag))
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn all_uses() -> (Vec<Use>, clap::Command, clap::Command) {
    let bootlab = built(bootlab_bootlab::Cli::command());
    let bootlabd = built(bootlab_bootlabd::Args::command());
    let root = repo();
    let rel = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    let mut uses = Vec::new();
    let mut md = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    md.extend(files_under(&root.join("docs"), "md"));
    for f in &md {
        let text = std::fs::read_to_string(f).unwrap();
        for seg in markdown_segments(&text) {
            uses_in(&seg, &rel(f), &bootlab, &mut uses);
        }
    }
    let mut commented = files_under(&root.join("config"), "toml");
    commented.push(root.join("deploy/lab.toml.example"));
    commented.push(root.join("deploy/systemd/bootlabd.service"));
    for f in &commented {
        let text = std::fs::read_to_string(f).unwrap();
        for seg in comment_segments(&text) {
            uses_in(&seg, &rel(f), &bootlab, &mut uses);
        }
    }
    let unit = std::fs::read_to_string(root.join("deploy/systemd/bootlabd.service")).unwrap();
    for l in unit.lines().filter(|l| l.starts_with("Exec")) {
        uses_in(l, "deploy/systemd/bootlabd.service", &bootlab, &mut uses);
    }
    for dir in [
        "crates/bootlab/src",
        "crates/bootlabd/src",
        "crates/firewall/src",
    ] {
        for f in files_under(&root.join(dir), "rs") {
            let text = std::fs::read_to_string(&f).unwrap();
            for line in text.lines() {
                for seg in backtick_spans(line) {
                    uses_in(&seg, &rel(&f), &bootlab, &mut uses);
                }
            }
        }
    }
    // help texts: every command's long help
    fn helps(cmd: &mut clap::Command, name: String, out: &mut Vec<(String, String)>) {
        out.push((name.clone(), cmd.render_long_help().to_string()));
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for n in names {
            if let Some(s) = cmd.find_subcommand_mut(&n) {
                helps(s, format!("{name} {n}"), out);
            }
        }
    }
    let mut texts = Vec::new();
    helps(&mut bootlab.clone(), "bootlab".into(), &mut texts);
    helps(&mut bootlabd.clone(), "bootlabd".into(), &mut texts);
    for (name, text) in &texts {
        for line in text.lines() {
            uses_in(line, &format!("`{name} --help`"), &bootlab, &mut uses);
        }
    }
    (uses, bootlab, bootlabd)
}

#[test]
fn every_flag_named_for_bootlab_and_bootlabd_exists() {
    let (uses, bootlab, bootlabd) = all_uses();
    let mut missing = Vec::new();
    for u in &uses {
        let ok = match u.bin {
            "bootlab" => has_flag(&bootlab, &u.path, &u.flag),
            _ => has_flag(&bootlabd, &[], &u.flag),
        };
        if !ok {
            missing.push(format!(
                "{}: `{} {} --{}` does not exist (in: {})",
                u.place,
                u.bin,
                u.path.join(" "),
                u.flag,
                u.line
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    // the scan found the command lines it is meant to check
    assert!(
        uses.len() >= 30,
        "only {} flags found: {uses:#?}",
        uses.len()
    );
    for (bin, flag) in [
        ("bootlabd", "check"),
        ("bootlab", "keep-disks"),
        ("bootlab", "restart-services"),
        ("bootlab", "strict"),
    ] {
        assert!(
            uses.iter().any(|u| u.bin == bin && u.flag == flag),
            "{bin} --{flag} not found by the scan"
        );
    }
}

/// Help texts may name flags without a command line ("with --watch"):
/// each exists somewhere in the same binary.
#[test]
fn flags_in_help_texts_exist_in_their_binary() {
    for (cmd, bin) in [
        (built(bootlab_bootlab::Cli::command()), "bootlab"),
        (built(bootlab_bootlabd::Args::command()), "bootlabd"),
    ] {
        let mut longs = Vec::new();
        every_long(&cmd, &mut longs);
        let mut texts = Vec::new();
        let mut c = cmd.clone();
        texts.push(c.render_long_help().to_string());
        for s in cmd.get_subcommands() {
            let mut s = s.clone();
            texts.push(s.render_long_help().to_string());
            for ss in s.clone().get_subcommands() {
                texts.push(ss.clone().render_long_help().to_string());
            }
        }
        for t in &texts {
            for word in t.split_whitespace() {
                for f in flags_in(word) {
                    assert!(
                        longs.contains(&f),
                        "{bin}'s help names --{f}, which no {bin} command has:\n{t}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_scan_catches_a_flag_that_does_not_exist() {
    let bootlab = built(bootlab_bootlab::Cli::command());
    let bootlabd = built(bootlab_bootlabd::Args::command());
    let mut uses = Vec::new();
    for seg in comment_segments(
        "#   bootlabd --config config/isolated-lab.toml --dry-run   # prints the ruleset\n",
    ) {
        uses_in(&seg, "t", &bootlab, &mut uses);
    }
    for seg in
        markdown_segments("run `cargo run --bin bootlab -- egress show --verbose lab.toml`\n")
    {
        uses_in(&seg, "t", &bootlab, &mut uses);
    }
    let flags: Vec<(&str, String, bool)> = uses
        .iter()
        .map(|u| {
            let ok = match u.bin {
                "bootlab" => has_flag(&bootlab, &u.path, &u.flag),
                _ => has_flag(&bootlabd, &[], &u.flag),
            };
            (u.bin, u.flag.clone(), ok)
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("bootlabd", "config".to_string(), true),
            ("bootlabd", "dry-run".to_string(), false),
            ("bootlab", "verbose".to_string(), false),
        ]
    );
    assert_eq!(uses[2].path, ["egress", "show"]);
}
