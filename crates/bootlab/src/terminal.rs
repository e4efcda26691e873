//! What the CLI does differently on a terminal: colours (`--color`,
//! `NO_COLOR`), the `up` progress bar or plain step lines, `down`'s
//! question, `status --watch`'s screen clearing. Every choice is a pure
//! function of the flags, the environment and which streams are terminals,
//! so tests decide it without a terminal; the binary tests run the real
//! thing on a pseudo-terminal.
//!
//! # Layout
//! - [`ColorChoice`] / [`Palette`]: `--color auto|always|never` + `NO_COLOR`
//!   + "stdout is a terminal" -> styled or plain text.
//! - [`ProgressMode`] and [`StepReporter`]: `up`'s progress (a bar on a
//!   terminal, one plain line per step otherwise, nothing with `--quiet`).
//! - [`DownConfirmation`]: ask, proceed or refuse before `down` deletes disks.

use crate::libvirt::{DiskVolume, human};

/// `--color`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when the output is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always colour (also into a pipe; `NO_COLOR` does not apply).
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour: `always` and `never` win; `auto` colours a
    /// terminal unless `NO_COLOR` is set to a non-empty value (no-color.org).
    pub fn enabled(self, is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    /// [`Self::enabled`] for this process's stdout and environment.
    pub fn for_stdout(self) -> bool {
        self.enabled(
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }
}

/// Styles text when colour is on; plain text otherwise (no escape at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    on: bool,
}

impl Palette {
    /// A palette that colours when `on`.
    pub fn new(on: bool) -> Self {
        Self { on }
    }

    fn paint(self, style: console::Style, text: &str) -> String {
        if self.on {
            style.force_styling(true).apply_to(text).to_string()
        } else {
            text.to_string()
        }
    }

    /// Something created or added.
    pub fn added(self, t: &str) -> String {
        self.paint(console::Style::new().green(), t)
    }
    /// Something removed, or a value being replaced.
    pub fn removed(self, t: &str) -> String {
        self.paint(console::Style::new().red(), t)
    }
    /// Something changed in place.
    pub fn changed(self, t: &str) -> String {
        self.paint(console::Style::new().yellow(), t)
    }
    /// Something started.
    pub fn started(self, t: &str) -> String {
        self.paint(console::Style::new().cyan(), t)
    }
    /// A refusal.
    pub fn refused(self, t: &str) -> String {
        self.paint(console::Style::new().red().bold(), t)
    }
    /// Less important words.
    pub fn dim(self, t: &str) -> String {
        self.paint(console::Style::new().dim(), t)
    }
}

/// How `up` shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing (`--quiet`).
    Quiet,
    /// A progress bar on stderr (a terminal): the step's name, and bytes
    /// during uploads.
    Bar,
    /// One plain line per step on stdout, no control characters.
    Plain,
}

impl ProgressMode {
    /// `--quiet` wins; a bar only when stderr (where it draws) is a terminal.
    pub fn choose(quiet: bool, stderr_is_terminal: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if stderr_is_terminal {
            Self::Bar
        } else {
            Self::Plain
        }
    }
}

/// What `up` reports while it applies the plan: steps and upload bytes.
pub trait StepReporter {
    /// Step `index` (from 1) of `total` begins; `what` names it.
    fn step(&mut self, index: usize, total: usize, what: &str);
    /// An upload of `total` bytes into `volume` begins.
    fn upload_start(&mut self, volume: &str, total: u64);
    /// `n` more bytes of the current upload were sent.
    fn upload_bytes(&mut self, n: u64);
    /// The current upload is complete.
    fn upload_done(&mut self);
    /// Every step is done.
    fn finish(&mut self);
}

/// The plain text of one step line: `[3/12] create volume x (qcow2, 1 GiB)`.
pub fn step_line(index: usize, total: usize, what: &str) -> String {
    format!("[{index}/{total}] {what}")
}

/// Plain lines: one per step, on stdout; uploads add nothing (their size is
/// in the step's name).
pub struct PlainSteps<W: std::io::Write> {
    out: W,
}

impl<W: std::io::Write> PlainSteps<W> {
    /// Writes step lines to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: std::io::Write> StepReporter for PlainSteps<W> {
    fn step(&mut self, index: usize, total: usize, what: &str) {
        let _ = writeln!(self.out, "{}", step_line(index, total, what));
        let _ = self.out.flush();
    }
    fn upload_start(&mut self, _: &str, _: u64) {}
    fn upload_bytes(&mut self, _: u64) {}
    fn upload_done(&mut self) {}
    fn finish(&mut self) {}
}

/// Nothing at all (`--quiet`).
pub struct QuietSteps;

impl StepReporter for QuietSteps {
    fn step(&mut self, _: usize, _: usize, _: &str) {}
    fn upload_start(&mut self, _: &str, _: u64) {}
    fn upload_bytes(&mut self, _: u64) {}
    fn upload_done(&mut self) {}
    fn finish(&mut self) {}
}

/// indicatif on stderr: a bar over the steps with the current step's name,
/// and under it, during an upload, a bar over its bytes.
pub struct BarSteps {
    multi: indicatif::MultiProgress,
    steps: indicatif::ProgressBar,
    upload: Option<indicatif::ProgressBar>,
}

impl BarSteps {
    /// Bars drawing to stderr.
    pub fn new(total: usize) -> Self {
        Self::with_target(total, indicatif::ProgressDrawTarget::stderr())
    }

    /// Bars drawing to `target` (tests use a hidden one).
    pub fn with_target(total: usize, target: indicatif::ProgressDrawTarget) -> Self {
        let multi = indicatif::MultiProgress::with_draw_target(target);
        let steps = multi.add(indicatif::ProgressBar::new(total as u64));
        steps.set_style(
            indicatif::ProgressStyle::with_template("[{pos}/{len}] {bar:24} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self {
            multi,
            steps,
            upload: None,
        }
    }

    /// Steps done so far (tests).
    pub fn position(&self) -> u64 {
        self.steps.position()
    }

    /// Bytes of the current upload sent so far (tests).
    pub fn upload_position(&self) -> Option<u64> {
        self.upload.as_ref().map(indicatif::ProgressBar::position)
    }
}

impl StepReporter for BarSteps {
    fn step(&mut self, index: usize, _total: usize, what: &str) {
        // `index` begins: the steps before it are done.
        self.steps.set_position(index.saturating_sub(1) as u64);
        self.steps.set_message(what.to_string());
    }
    fn upload_start(&mut self, volume: &str, total: u64) {
        let bar = self.multi.add(indicatif::ProgressBar::new(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "      {bar:24} {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("upload {volume}"));
        self.upload = Some(bar);
    }
    fn upload_bytes(&mut self, n: u64) {
        if let Some(b) = &self.upload {
            b.inc(n);
        }
    }
    fn upload_done(&mut self) {
        if let Some(b) = self.upload.take() {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }
    fn finish(&mut self) {
        self.upload_done();
        if let Some(len) = self.steps.length() {
            self.steps.set_position(len);
        }
        self.steps.finish_and_clear();
    }
}

/// Whether `down` may delete disk volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownConfirmation {
    /// Nothing to ask (no disks to delete, `--keep-disks`, or `--yes`).
    Proceed,
    /// Ask on the terminal.
    Ask,
    /// Stdin is not a terminal and `--yes` is absent: refuse, delete nothing.
    Refuse,
}

impl DownConfirmation {
    /// Decides before anything is deleted.
    pub fn decide(disks: usize, yes: bool, keep_disks: bool, stdin_is_terminal: bool) -> Self {
        if disks == 0 || yes || keep_disks {
            Self::Proceed
        } else if stdin_is_terminal {
            Self::Ask
        } else {
            Self::Refuse
        }
    }
}

fn sizes(disks: &[DiskVolume]) -> (u64, u64) {
    (
        disks.iter().map(|d| d.capacity).sum(),
        disks.iter().map(|d| d.allocation).sum(),
    )
}

/// `delete 3 volumes (30 GiB) of lab okd? [y/N] `, after the volumes, one a line.
pub fn down_question(lab: &str, disks: &[DiskVolume]) -> String {
    let mut q = format!("bootlab down removes lab {lab}'s VMs and network, and its disks:\n");
    for d in disks {
        q.push_str(&format!(
            "  {:<32} {:>9} ({} used)\n",
            d.name,
            human(d.capacity),
            human_approx(d.allocation)
        ));
    }
    let (cap, _) = sizes(disks);
    q.push_str(&format!(
        "delete {} volume{} ({}) of lab {lab}? [y/N] ",
        disks.len(),
        if disks.len() == 1 { "" } else { "s" },
        human_approx(cap)
    ));
    q
}

/// The refusal when stdin is not a terminal and `--yes` is absent.
pub fn down_refusal(lab: &str, disks: &[DiskVolume]) -> String {
    let (cap, _) = sizes(disks);
    format!(
        "error: bootlab down would delete {} disk volume{} ({}) of lab {lab}, and stdin is not a terminal to ask\n  help: pass --yes to delete them, or --keep-disks to keep them; nothing was deleted",
        disks.len(),
        if disks.len() == 1 { "" } else { "s" },
        human_approx(cap)
    )
}

/// True for an answer that means yes (`y`, `yes`, any case); anything else,
/// an empty line and end of input mean no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Bytes for humans, rounded to one decimal when not a whole unit.
pub fn human_approx(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, n) in UNITS {
        if b >= n {
            if b % n == 0 {
                return format!("{} {u}", b / n);
            }
            return format!("{:.1} {u}", b as f64 / n as f64);
        }
    }
    format!("{b} B")
}

/// `status --watch` on a terminal: clear the screen and home the cursor
/// before each block. Elsewhere blocks are separated by a blank line.
pub const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_follows_the_flag_the_terminal_and_no_color() {
        assert!(ColorChoice::Auto.enabled(true, None));
        assert!(!ColorChoice::Auto.enabled(false, None));
        assert!(!ColorChoice::Auto.enabled(true, Some(OsStr::new("1"))));
        // an empty NO_COLOR does not count (no-color.org)
        assert!(ColorChoice::Auto.enabled(true, Some(OsStr::new(""))));
        assert!(ColorChoice::Always.enabled(false, Some(OsStr::new("1"))));
        assert!(!ColorChoice::Never.enabled(true, None));
    }

    #[test]
    fn palette_off_writes_no_escape() {
        let p = Palette::new(false);
        for s in [p.added("a"), p.removed("b"), p.changed("c"), p.refused("d")] {
            assert!(!s.contains('\x1b'), "{s:?}");
        }
        assert_eq!(Palette::new(true).added("a"), "\x1b[32ma\x1b[0m");
    }

    #[test]
    fn progress_mode() {
        assert_eq!(ProgressMode::choose(true, true), ProgressMode::Quiet);
        assert_eq!(ProgressMode::choose(false, true), ProgressMode::Bar);
        assert_eq!(ProgressMode::choose(false, false), ProgressMode::Plain);
    }

    #[test]
    fn plain_steps_are_one_line_each_without_control_characters() {
        let mut r = PlainSteps::new(Vec::new());
        r.step(1, 2, "create pool lab");
        r.upload_start("v", 10);
        r.upload_bytes(10);
        r.upload_done();
        r.step(2, 2, "start domain lab-services");
        r.finish();
        let out = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            out,
            "[1/2] create pool lab\n[2/2] start domain lab-services\n"
        );
    }

    #[test]
    fn the_bar_advances_per_step_and_per_byte() {
        let mut r = BarSteps::with_target(3, indicatif::ProgressDrawTarget::hidden());
        r.step(1, 3, "create pool p");
        assert_eq!(r.position(), 0);
        r.step(2, 3, "create volume v (upload 3 MiB)");
        assert_eq!(r.position(), 1);
        r.upload_start("v", 3 << 20);
        r.upload_bytes(1 << 20);
        r.upload_bytes(1 << 20);
        assert_eq!(r.upload_position(), Some(2 << 20));
        r.upload_done();
        assert_eq!(r.upload_position(), None);
        r.step(3, 3, "start domain d");
        assert_eq!(r.position(), 2);
        r.finish();
        assert_eq!(r.position(), 3);
    }

    #[test]
    fn down_asks_on_a_terminal_and_refuses_elsewhere() {
        use DownConfirmation::*;
        assert_eq!(DownConfirmation::decide(2, false, false, true), Ask);
        assert_eq!(DownConfirmation::decide(2, false, false, false), Refuse);
        assert_eq!(DownConfirmation::decide(2, true, false, false), Proceed);
        assert_eq!(DownConfirmation::decide(2, false, true, false), Proceed);
        assert_eq!(DownConfirmation::decide(0, false, false, false), Proceed);
    }

    #[test]
    fn down_question_and_refusal_words() {
        let disks = [
            DiskVolume {
                name: "okd-master-0-disk0.qcow2".into(),
                capacity: 120 << 30,
                allocation: 3 << 29,
            },
            DiskVolume {
                name: "okd-services-disk0.qcow2".into(),
                capacity: 20 << 30,
                allocation: 64 << 10,
            },
        ];
        let q = down_question("okd", &disks);
        assert!(
            q.ends_with("delete 2 volumes (140 GiB) of lab okd? [y/N] "),
            "{q}"
        );
        assert!(
            q.contains("okd-master-0-disk0.qcow2") && q.contains("1.5 GiB used"),
            "{q}"
        );
        let r = down_refusal("okd", &disks[..1]);
        assert!(r.contains("1 disk volume (120 GiB)"), "{r}");
        assert!(r.contains("--yes") && r.contains("--keep-disks"), "{r}");
        assert!(is_yes("y\n") && is_yes(" YES ") && !is_yes("") && !is_yes("n"));
    }
}
