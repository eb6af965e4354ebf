//! The `reason` a job is submitted with, which names the user, and recognising a
//! user's jobs by it.

use super::Action;
use crate::rapi::Job;

/// The `reason` Ganeti records with the job.
pub fn reason(user: &str, action: Action) -> String {
    reason_for(user, action.as_str())
}

/// The `reason` of a job for `action`, named as in the URL (VM actions, and
/// [`CLUSTER_ACTIONS`]).
pub fn reason_for(user: &str, action: &str) -> String {
    format!("ganeti-operator console endpoint: {action} by {user}")
}

/// Actions on a cluster itself, whose jobs name the user too.
pub const CLUSTER_ACTIONS: &[&str] = &["cluster-tags"];

/// Whether `user` submitted the job through this API (through any replica): the
/// `reason=` we submit with names the user, and Ganeti keeps it in the job. Exact
/// matches only: an action name has no space, so `<action> by <user>` cannot be
/// forged by another user's name.
pub fn submitted_by(job: &Job, user: &str) -> bool {
    job.user_reasons().any(|r| {
        Action::ALL.iter().any(|a| r == reason(user, *a))
            || CLUSTER_ACTIONS.iter().any(|a| r == reason_for(user, a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_is_the_users_whose_name_its_reason_carries() {
        let job = |reason: &str| -> Job {
            serde_json::from_value(json!({"id": 1, "status": "success",
                "ops": [{"reason": [["gnt:user", reason, 1], ["gnt:library:rlib2:instances_name_reboot", "", 2]]}]}))
            .unwrap()
        };
        let alices = job(&reason("alice", Action::Reboot));
        assert!(submitted_by(&alices, "alice"));
        assert!(!submitted_by(&alices, "bob"));
        assert!(!submitted_by(&alices, "ali"));
        // A user named to look like the tail of someone else's reason is still themselves.
        let tricky = job(&reason("x by alice", Action::Migrate));
        assert!(submitted_by(&tricky, "x by alice"));
        assert!(!submitted_by(&tricky, "alice"));
        // Another tool's reason, even naming alice, is not ours.
        assert!(!submitted_by(&job("console endpoint: reboot by alice"), "alice"));
        let untagged: Job = serde_json::from_value(json!({"id": 2, "status": "running"})).unwrap();
        assert!(!submitted_by(&untagged, "alice"));
    }

    #[test]
    fn the_reason_names_the_user() {
        assert_eq!(
            reason("alice", Action::Reboot),
            "ganeti-operator console endpoint: reboot by alice"
        );
    }
}
