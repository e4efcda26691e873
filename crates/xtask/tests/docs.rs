//! The README is the product's own: no link or path outside the repository,
//! exactly two newcomer commands (run and test), .ci/run runs exactly the
//! README's test command; help texts name files
//! users have (never the spec's lab.example.toml); every relative link in
//! README.md and docs/ resolves.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fenced code blocks of a markdown text.
fn code_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => current = Some(String::new()),
            }
        } else if let Some(b) = current.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}

/// `](target)` link targets.
fn links(md: &str) -> Vec<String> {
    md.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn readme_has_exactly_the_run_and_test_commands() {
    let readme = read("README.md");
    let blocks = code_blocks(&readme);
    assert_eq!(
        blocks,
        [
            "cargo run --release --bin bootlabd -- --config config/dev.toml\n",
            "tests/run-all.sh\n"
        ],
        "README.md's newcomer commands"
    );
    let ci = read(".ci/run");
    let commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.starts_with("set ") && !l.starts_with("cd "))
        .collect();
    assert_eq!(commands, ["exec tests/run-all.sh"], ".ci/run: {ci}");
}

#[test]
fn docs_stay_inside_the_repository_and_links_resolve() {
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("ARCHITECTURE.md")];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p.strip_prefix(repo()).unwrap_or(&p).to_path_buf());
        }
    }
    for f in &files {
        let text = std::fs::read_to_string(repo().join(f)).unwrap();
        assert!(
            !text.contains("shared/spec"),
            "{}: names shared/spec",
            f.display()
        );
        assert!(
            !text.contains("../shared"),
            "{}: names ../shared",
            f.display()
        );
        assert!(
            !text.contains("lab.example.toml"),
            "{}: names lab.example.toml",
            f.display()
        );
        let dir = repo().join(f).parent().unwrap().to_path_buf();
        for target in links(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = dir.join(path);
            assert!(
                resolved.exists(),
                "{}: link {target} does not resolve",
                f.display()
            );
            let canon = resolved.canonicalize().unwrap();
            assert!(
                canon.starts_with(repo().canonicalize().unwrap()),
                "{}: link {target} leaves the repository",
                f.display()
            );
        }
    }
}

#[test]
fn help_texts_name_files_users_have() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut sources = Vec::new();
    for e in std::fs::read_dir(repo().join("crates")).unwrap() {
        let krate = e.unwrap().path();
        if krate.ends_with("xtask") {
            continue; // this file names them on purpose
        }
        walk(&krate, &mut sources);
    }
    for f in sources {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("lab.example.toml"),
            "{} names lab.example.toml",
            f.display()
        );
        assert!(
            !text.contains("shared/spec"),
            "{} reads shared/spec",
            f.display()
        );
    }
}
