//! Crash points for the crash-safety tests.
//!
//! `GANETI_OPERATOR_CRASH_AT=<point>` makes the process exit abruptly (no destructors,
//! no status writes, no graceful shutdown: as close to `kill -9` as a process can do to
//! itself) the first time it reaches `<point>`. Unset in production; the points cost
//! one comparison against a value read once.

use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const CRASH_AT_ENV: &str = "GANETI_OPERATOR_CRASH_AT";
/// Exit status of an injected crash, so tests can tell it from a real failure.
pub const CRASH_EXIT_CODE: i32 = 86;

/// The crash points, in the order an application meets them.
pub mod points {
    /// The approval is recorded in status; no create job is submitted yet.
    pub const AFTER_DECISION: &str = "after-decision";
    /// Ganeti accepted the create job; its id is not recorded yet.
    pub const AFTER_CREATE_POST: &str = "after-create-post";
    /// The job id is recorded; the job still runs.
    pub const WHILE_JOB_RUNS: &str = "while-job-runs";
}

fn configured() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(CRASH_AT_ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Exits the process at once if `point` is the configured crash point.
pub fn point(point: &str) {
    if configured() == Some(point) {
        eprintln!("{CRASH_AT_ENV}={point}: crashing on purpose");
        std::process::exit(CRASH_EXIT_CODE);
    }
}
