//! Boot attempts and the stall rule (pure: events and a clock in, facts
//! out).
//!
//! A machine's timeline keeps every event since bootlabd started (bounded
//! by `bootlab_state::timeline::MAX_EVENTS`), across reboots. The page
//! shows the **current boot attempt**: it starts at the first DHCP event
//! after the last kernel/initrd/config fetch that is followed by a new
//! loader or script fetch (a machine that fetched its kernel and then asks
//! for a loader or a boot script again has rebooted). DHCP after the
//! kernel without a new loader or script (the booted OS asking for its
//! address, an installed node renewing) stays in the same attempt. Within
//! an attempt the **current stage** is the furthest stage reached, so an
//! iPXE client's second DHCP exchange does not move it back.
//!
//! # The stall rule
//! A known machine is *stalled* when it has been at its current stage
//! longer than that stage's usual time. Only stages after which bootlab
//! expects the machine's next request count: DHCP (when the reply named a
//! boot file: a machine that got an address without one is not
//! network-booting), loader, script and kernel. After the initrd the
//! operating system runs and whether it fetches more is its own business.
//!
//! The usual time of a stage is
//! `max(default, FACTOR x median of the times other machines took to leave
//! that stage)`, the median taken over the machines' current attempts once
//! at least [`MIN_SAMPLES`] of them have left the stage; before that it is
//! the default ([`default_usual`]: DHCP 60 s, loader 60 s, script 120 s,
//! kernel 300 s; the kernel's is long because the next event, the initrd,
//! is recorded when its transfer ends). The defaults are floors: a fast lab
//! does not turn one slow machine's few seconds into a warning; a slow lab
//! (TCG guests, big images) raises the bar for everyone.

use std::time::{Duration, SystemTime};

use bootlab_state::Stage;
use bootlab_state::timeline::Event;

/// The stages in boot order.
pub const STAGES: [Stage; 6] = [
    Stage::Dhcp,
    Stage::Tftp,
    Stage::Script,
    Stage::Kernel,
    Stage::Initrd,
    Stage::Config,
];

/// A stage's position in [`STAGES`].
pub fn index(stage: Stage) -> usize {
    match stage {
        Stage::Dhcp => 0,
        Stage::Tftp => 1,
        Stage::Script => 2,
        Stage::Kernel => 3,
        Stage::Initrd => 4,
        Stage::Config => 5,
    }
}

/// How many times the median a stage may take before it counts as stalled.
pub const FACTOR: u32 = 3;

/// Machines that must have left a stage before their median counts.
pub const MIN_SAMPLES: usize = 3;

/// The usual time of `stage` before any measurement; `None` for stages
/// the rule does not apply to (initrd, config).
pub fn default_usual(stage: Stage) -> Option<Duration> {
    let secs = match stage {
        Stage::Dhcp | Stage::Tftp => 60,
        Stage::Script => 120,
        Stage::Kernel => 300,
        Stage::Initrd | Stage::Config => return None,
    };
    Some(Duration::from_secs(secs))
}

/// One machine's current boot attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attempt {
    /// When each stage (by [`index`]) was first reached in this attempt.
    pub reached: [Option<SystemTime>; 6],
    /// The furthest stage reached.
    pub current: Option<Stage>,
    /// The attempt's first event.
    pub started: Option<SystemTime>,
    /// The attempt's latest event (of any kind, notes included).
    pub last: Option<SystemTime>,
    /// The latest DHCP offer or ACK named a boot file (`file=` in the
    /// event's detail, as the DHCP service writes it, other than `-`).
    pub boot_file_offered: bool,
}

impl Attempt {
    /// When the machine reached its current stage.
    pub fn entered(&self) -> Option<SystemTime> {
        self.current.and_then(|s| self.reached[index(s)])
    }

    /// How long the machine stayed at `stage` before reaching a later one
    /// (`None` while it is still there or never was).
    pub fn time_at(&self, stage: Stage) -> Option<Duration> {
        let at = self.reached[index(stage)]?;
        let next = self.reached[index(stage) + 1..].iter().flatten().min()?;
        Some(next.duration_since(at).unwrap_or_default())
    }

    /// Whether the stall rule applies at the current stage.
    fn expects_next_step(&self) -> bool {
        match self.current {
            Some(Stage::Dhcp) => self.boot_file_offered,
            Some(s) => default_usual(s).is_some(),
            None => false,
        }
    }
}

/// Whether a DHCP event's detail names a boot file (`file=<name>`).
fn names_boot_file(detail: Option<&str>) -> bool {
    detail
        .and_then(|d| d.split_whitespace().find_map(|w| w.strip_prefix("file=")))
        .is_some_and(|f| !f.is_empty() && f != "-")
}

/// The current boot attempt among `events` (oldest first).
pub fn current_attempt<'a>(events: impl IntoIterator<Item = &'a Event>) -> Attempt {
    let events: Vec<&Event> = events.into_iter().collect();
    // Where the current attempt starts.
    let mut start = 0;
    let mut furthest: Option<Stage> = None;
    let mut last_late: Option<usize> = None;
    for (i, e) in events.iter().enumerate() {
        let Some(stage) = e.stage else { continue };
        let restart = matches!(stage, Stage::Tftp | Stage::Script)
            && furthest.is_some_and(|f| f >= Stage::Kernel);
        if restart {
            let after = last_late.map_or(start, |l| l + 1);
            start = (after..i)
                .find(|&j| events[j].stage == Some(Stage::Dhcp))
                .unwrap_or(i);
            furthest = events[start..=i].iter().filter_map(|e| e.stage).max();
            last_late = None;
        } else {
            furthest = furthest.max(Some(stage));
        }
        if stage >= Stage::Kernel {
            last_late = Some(i);
        }
    }
    let mut a = Attempt::default();
    for e in &events[start..] {
        a.started.get_or_insert(e.at);
        a.last = Some(e.at);
        if let Some(stage) = e.stage {
            a.reached[index(stage)].get_or_insert(e.at);
            a.current = a.current.max(Some(stage));
            if stage == Stage::Dhcp && matches!(e.kind.as_str(), "offer" | "ack") {
                a.boot_file_offered = names_boot_file(e.detail.as_deref());
            }
        }
    }
    a
}

/// The usual time of each stage, measured over machines' attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usual {
    by_stage: [Option<Duration>; 6],
}

/// The median of `v` (sorted in place); the lower middle for even lengths.
fn median(v: &mut [Duration]) -> Option<Duration> {
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

impl Usual {
    /// The usual times, from the attempts of every machine.
    pub fn measure<'a>(attempts: impl IntoIterator<Item = &'a Attempt>) -> Self {
        let mut samples: [Vec<Duration>; 6] = Default::default();
        for a in attempts {
            for s in STAGES {
                if let Some(d) = a.time_at(s) {
                    samples[index(s)].push(d);
                }
            }
        }
        let mut by_stage = [None; 6];
        for s in STAGES {
            let Some(floor) = default_usual(s) else {
                continue;
            };
            let v = &mut samples[index(s)];
            let measured = if v.len() >= MIN_SAMPLES {
                median(v).map(|m| m * FACTOR)
            } else {
                None
            };
            by_stage[index(s)] = Some(measured.map_or(floor, |m| m.max(floor)));
        }
        Self { by_stage }
    }

    /// The usual time at `stage`; `None` where the rule does not apply.
    pub fn of(&self, stage: Stage) -> Option<Duration> {
        self.by_stage[index(stage)]
    }
}

/// A stalled machine: where, for how long, against what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// The stage it sits at.
    pub stage: Stage,
    /// How long it has been there.
    pub for_: Duration,
    /// The stage's usual time.
    pub usual: Duration,
}

/// Whether `attempt` is stalled at `now` under `usual`.
pub fn stall(attempt: &Attempt, usual: &Usual, now: SystemTime) -> Option<Stall> {
    if !attempt.expects_next_step() {
        return None;
    }
    let stage = attempt.current?;
    let limit = usual.of(stage)?;
    let for_ = now.duration_since(attempt.entered()?).unwrap_or_default();
    (for_ > limit).then_some(Stall {
        stage,
        for_,
        usual: limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootlab_state::Service;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn ev(secs: u64, stage: Option<Stage>, kind: &str, detail: &str) -> Event {
        Event {
            at: at(secs),
            service: Service::Http,
            kind: kind.to_owned(),
            detail: (!detail.is_empty()).then(|| detail.to_owned()),
            path: None,
            bytes: None,
            stage,
        }
    }

    fn dhcp(secs: u64, kind: &str, file: &str) -> Event {
        ev(
            secs,
            Some(Stage::Dhcp),
            kind,
            &format!("ip=10.0.0.5 file={file}"),
        )
    }

    fn fetch(secs: u64, stage: Stage) -> Event {
        ev(secs, Some(stage), "fetch", "")
    }

    /// A PXE boot: DHCP, loader, iPXE's DHCP, script, kernel, initrd.
    fn boot(t: u64) -> Vec<Event> {
        vec![
            dhcp(t, "discover", "-"),
            dhcp(t + 1, "ack", "snponly.efi"),
            fetch(t + 2, Stage::Tftp),
            dhcp(t + 3, "ack", "http://10.0.0.1/boot.ipxe"),
            fetch(t + 4, Stage::Script),
            fetch(t + 6, Stage::Kernel),
            fetch(t + 9, Stage::Initrd),
        ]
    }

    #[test]
    fn an_ipxe_second_dhcp_does_not_move_the_stage_back() {
        let events = boot(0);
        let a = current_attempt(&events[..4]);
        assert_eq!(a.current, Some(Stage::Tftp));
        assert_eq!(a.entered(), Some(at(2)));
        assert_eq!(a.last, Some(at(3)));
        let a = current_attempt(&events);
        assert_eq!(a.current, Some(Stage::Initrd));
        assert_eq!(a.started, Some(at(0)));
        assert_eq!(a.reached[index(Stage::Kernel)], Some(at(6)));
        assert_eq!(a.time_at(Stage::Script), Some(Duration::from_secs(2)));
        assert_eq!(a.time_at(Stage::Initrd), None, "still there");
    }

    #[test]
    fn a_reboot_starts_a_new_attempt_at_its_dhcp() {
        let mut events = boot(0);
        events.extend(boot(100));
        let a = current_attempt(&events);
        assert_eq!(a.started, Some(at(100)));
        assert_eq!(a.current, Some(Stage::Initrd));
        // Mid-way through the second boot: only its own stages count.
        let a = current_attempt(&events[..events.len() - 3]);
        assert_eq!(a.started, Some(at(100)));
        assert_eq!(a.current, Some(Stage::Tftp));
        let a = current_attempt(&events[..events.len() - 2]);
        assert_eq!(a.current, Some(Stage::Script));
        assert_eq!(a.reached[index(Stage::Kernel)], None);
    }

    #[test]
    fn dhcp_after_the_kernel_stays_in_the_attempt() {
        // The booted OS asks for its address, then fetches its config.
        let mut events = boot(0);
        events.push(dhcp(20, "ack", "-"));
        events.push(fetch(21, Stage::Config));
        let a = current_attempt(&events);
        assert_eq!(a.started, Some(at(0)));
        assert_eq!(a.current, Some(Stage::Config));
        assert!(!a.boot_file_offered);
    }

    #[test]
    fn stalls_after_the_default_without_measurements() {
        let events = boot(0);
        let usual = Usual::measure([]);
        assert_eq!(usual.of(Stage::Script), Some(Duration::from_secs(120)));
        assert_eq!(usual.of(Stage::Initrd), None);
        let a = current_attempt(&events[..5]); // at script since t=4
        assert_eq!(stall(&a, &usual, at(4 + 120)), None, "not longer yet");
        assert_eq!(
            stall(&a, &usual, at(4 + 121)),
            Some(Stall {
                stage: Stage::Script,
                for_: Duration::from_secs(121),
                usual: Duration::from_secs(120),
            })
        );
        // Past the initrd the OS runs: never stalled.
        let a = current_attempt(&events);
        assert_eq!(stall(&a, &usual, at(100_000)), None);
    }

    #[test]
    fn dhcp_without_a_boot_file_is_not_a_stall() {
        let usual = Usual::measure([]);
        let renewing = [dhcp(0, "request", "-"), dhcp(0, "ack", "-")];
        let a = current_attempt(&renewing);
        assert_eq!(a.current, Some(Stage::Dhcp));
        assert_eq!(stall(&a, &usual, at(10_000)), None);
        let pxe = [dhcp(0, "discover", "-"), dhcp(0, "offer", "undionly.kpxe")];
        let a = current_attempt(&pxe);
        assert!(a.boot_file_offered);
        assert_eq!(
            stall(&a, &usual, at(61)).map(|s| s.stage),
            Some(Stage::Dhcp)
        );
        assert!(!names_boot_file(Some("arch=0 ipxe=true")));
        assert!(!names_boot_file(None));
    }

    #[test]
    fn slow_labs_raise_the_bar_fast_ones_keep_the_floor() {
        // Three machines that each took 200 s from script to kernel.
        let slow: Vec<Attempt> = (0..3)
            .map(|_| {
                current_attempt(&[
                    dhcp(0, "ack", "x"),
                    fetch(10, Stage::Script),
                    fetch(210, Stage::Kernel),
                ])
            })
            .collect();
        let usual = Usual::measure(&slow);
        assert_eq!(usual.of(Stage::Script), Some(Duration::from_secs(600)));
        // DHCP took 10 s each: 3 x 10 s is under the 60 s floor.
        assert_eq!(usual.of(Stage::Dhcp), Some(Duration::from_secs(60)));
        // Two samples are not enough.
        let usual = Usual::measure(&slow[..2]);
        assert_eq!(usual.of(Stage::Script), Some(Duration::from_secs(120)));
        let stuck = current_attempt(&[dhcp(0, "ack", "x"), fetch(10, Stage::Script)]);
        let usual = Usual::measure(slow.iter().chain([&stuck]));
        assert_eq!(stall(&stuck, &usual, at(10 + 600)), None);
        assert_eq!(
            stall(&stuck, &usual, at(10 + 601)).map(|s| s.usual),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn median_is_the_lower_middle() {
        let s = Duration::from_secs;
        assert_eq!(median(&mut [s(5), s(1), s(3)]), Some(s(3)));
        assert_eq!(median(&mut [s(4), s(1), s(3), s(2)]), Some(s(2)));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn skipped_stages_do_not_break_time_at() {
        // BIOS with the NIC's iPXE ROM: no loader over TFTP.
        let a = current_attempt(&[
            dhcp(0, "ack", "http://x/boot.ipxe"),
            fetch(3, Stage::Script),
        ]);
        assert_eq!(a.time_at(Stage::Dhcp), Some(Duration::from_secs(3)));
        assert_eq!(a.time_at(Stage::Tftp), None);
    }
}
