//! A backend's health as a state machine (pure: check outcomes in,
//! transitions out).
//!
//! A backend starts **provisionally up**, as haproxy's servers do: it takes
//! connections at once, its first check runs at once, and that first check
//! alone decides (a failure takes it down without waiting for `fall`).
//! After that, `fall` consecutive failures take an up backend down and
//! `rise` consecutive passes bring a down backend up. A drained backend is
//! not checked; when it is undrained it starts provisionally up again.

/// How a backend's health changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// It was down and takes connections again.
    Up {
        /// Why, e.g. "2 consecutive checks passed".
        reason: String,
    },
    /// It was up and takes no new connections.
    Down {
        /// Why, e.g. "3 consecutive checks failed, last: connection refused".
        reason: String,
    },
}

/// One backend's health-check state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    up: bool,
    provisional: bool,
    passed_streak: u32,
    failed_streak: u32,
    last_error: Option<String>,
    checks_passed: u64,
    checks_failed: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Provisionally up, never checked.
    pub fn new() -> Self {
        Self {
            up: true,
            provisional: true,
            passed_streak: 0,
            failed_streak: 0,
            last_error: None,
            checks_passed: 0,
            checks_failed: 0,
        }
    }

    /// Whether the backend may take new connections (health only; draining
    /// is separate).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether no check has completed since start or undrain.
    pub fn is_provisional(&self) -> bool {
        self.provisional
    }

    /// Consecutive passed checks up to now.
    pub fn passed_streak(&self) -> u32 {
        self.passed_streak
    }

    /// Consecutive failed checks up to now.
    pub fn failed_streak(&self) -> u32 {
        self.failed_streak
    }

    /// The most recent failed check's error (kept after recovery).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Checks passed since the backend appeared.
    pub fn checks_passed(&self) -> u64 {
        self.checks_passed
    }

    /// Checks failed since the backend appeared.
    pub fn checks_failed(&self) -> u64 {
        self.checks_failed
    }

    /// Starts over provisionally up (on undrain), keeping the totals.
    pub fn restart(&mut self) {
        self.up = true;
        self.provisional = true;
        self.passed_streak = 0;
        self.failed_streak = 0;
    }

    /// Records one check's outcome under `rise`/`fall` (0 counts as 1) and
    /// says whether the state changed.
    pub fn record(
        &mut self,
        outcome: Result<(), String>,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        let (rise, fall) = (rise.max(1), fall.max(1));
        let provisional = std::mem::replace(&mut self.provisional, false);
        match outcome {
            Ok(()) => {
                self.checks_passed += 1;
                self.passed_streak = self.passed_streak.saturating_add(1);
                self.failed_streak = 0;
                if !self.up && self.passed_streak >= rise {
                    self.up = true;
                    return Some(Transition::Up {
                        reason: plural(
                            self.passed_streak,
                            "consecutive check passed",
                            "consecutive checks passed",
                        ),
                    });
                }
                None
            }
            Err(error) => {
                self.checks_failed += 1;
                self.failed_streak = self.failed_streak.saturating_add(1);
                self.passed_streak = 0;
                let reason = if provisional && self.up {
                    Some(format!("first check failed: {error}"))
                } else if self.up && self.failed_streak >= fall {
                    Some(format!(
                        "{}, last: {error}",
                        plural(
                            self.failed_streak,
                            "consecutive check failed",
                            "consecutive checks failed"
                        )
                    ))
                } else {
                    None
                };
                self.last_error = Some(error);
                reason.map(|reason| {
                    self.up = false;
                    Transition::Down { reason }
                })
            }
        }
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Result<(), String> {
        Err("connection refused".into())
    }

    #[test]
    fn starts_provisionally_up_and_a_first_pass_keeps_it_up() {
        let mut h = Health::new();
        assert!(h.is_up() && h.is_provisional());
        assert_eq!(h.record(Ok(()), 2, 3), None);
        assert!(h.is_up() && !h.is_provisional());
    }

    #[test]
    fn a_failed_first_check_takes_it_down_at_once() {
        let mut h = Health::new();
        let t = h.record(fail(), 2, 3);
        assert_eq!(
            t,
            Some(Transition::Down {
                reason: "first check failed: connection refused".into()
            })
        );
        assert!(!h.is_up());
        assert_eq!(h.last_error(), Some("connection refused"));
    }

    #[test]
    fn fall_failures_take_it_down_and_rise_passes_bring_it_back() {
        let mut h = Health::new();
        h.record(Ok(()), 2, 3);
        assert_eq!(h.record(fail(), 2, 3), None);
        assert_eq!(h.record(fail(), 2, 3), None);
        assert_eq!(h.failed_streak(), 2);
        let down = h.record(fail(), 2, 3);
        assert!(
            matches!(&down, Some(Transition::Down { reason }) if reason == "3 consecutive checks failed, last: connection refused"),
            "{down:?}"
        );
        assert_eq!(h.record(Ok(()), 2, 3), None);
        assert_eq!(
            h.record(fail(), 2, 3),
            None,
            "a failure resets the pass streak"
        );
        assert_eq!(h.record(Ok(()), 2, 3), None);
        assert_eq!(
            h.record(Ok(()), 2, 3),
            Some(Transition::Up {
                reason: "2 consecutive checks passed".into()
            })
        );
        assert!(h.is_up());
        assert_eq!(
            h.last_error(),
            Some("connection refused"),
            "kept after recovery"
        );
        assert_eq!((h.checks_passed(), h.checks_failed()), (4, 4));
    }

    #[test]
    fn a_pass_resets_the_failure_streak() {
        let mut h = Health::new();
        h.record(Ok(()), 2, 3);
        for _ in 0..10 {
            assert_eq!(h.record(fail(), 2, 3), None);
            assert_eq!(h.record(fail(), 2, 3), None);
            assert_eq!(h.record(Ok(()), 2, 3), None);
        }
        assert!(h.is_up());
    }

    #[test]
    fn zero_rise_and_fall_count_as_one() {
        let mut h = Health::new();
        h.record(Ok(()), 0, 0);
        assert!(matches!(
            h.record(fail(), 0, 0),
            Some(Transition::Down { .. })
        ));
        assert!(
            matches!(h.record(Ok(()), 0, 0), Some(Transition::Up { reason }) if reason == "1 consecutive check passed")
        );
    }

    #[test]
    fn restart_is_provisional_again() {
        let mut h = Health::new();
        h.record(fail(), 2, 3);
        h.restart();
        assert!(h.is_up() && h.is_provisional());
        assert!(matches!(
            h.record(fail(), 2, 3),
            Some(Transition::Down { .. })
        ));
    }
}
