//! Peer tools and privileges: a test that lacks one fails loudly with the
//! package to install (tests/apt-packages.txt lists them), never skips; and
//! running a command that must succeed.

use std::path::Path;
use std::process::{Command, Output};

/// Panics unless `tool` is on PATH (or in /usr/sbin, /sbin), naming the
/// Debian `package` that has it.
pub fn require(tool: &str, package: &str) {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    let found = on_path
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file();
    assert!(
        found,
        "{tool} is missing: apt-get install {package} (see tests/apt-packages.txt)"
    );
}

/// [`require`] for every `(tool, package)`.
pub fn require_all(tools: &[(&str, &str)]) {
    for (tool, package) in tools {
        require(tool, package);
    }
}

/// Panics unless the test runs as root (namespaces, nftables, port 67).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces); CI runs tests/run-all.sh as root"
    );
}

/// Runs `cmd` to completion; panics with its stdout and stderr unless it
/// succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`run`], returning stdout as text.
pub fn run_text(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "apt-get install no-such-package")]
    fn a_missing_tool_fails_with_its_package() {
        require("bootlab-no-such-tool", "no-such-package");
    }

    #[test]
    #[should_panic(expected = "failed")]
    fn a_failing_command_fails_with_its_output() {
        run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
    }

    #[test]
    fn run_text_returns_stdout() {
        assert_eq!(run_text(Command::new("echo").arg("hi")), "hi\n");
    }
}
