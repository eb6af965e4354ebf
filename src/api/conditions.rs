//! Standard status conditions: set one without disturbing the others, and keep
//! `lastTransitionTime` when only the reason or message changed (as Kubernetes' own
//! `meta.SetStatusCondition` does), so rewriting an unchanged status is a no-op.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `True`, `False` or `Unknown`, as conditions spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b { Status::True } else { Status::False }
    }
}

/// Sets condition `type_`, keeping its transition time unless the status flips.
/// Returns whether anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let before = existing.clone();
            if existing.status != status.as_str() {
                existing.status = status.as_str().to_string();
                existing.last_transition_time = Time(now);
            }
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = observed_generation;
            *existing != before
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status: status.as_str().to_string(),
                reason: reason.to_string(),
                message,
                observed_generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// Removes condition `type_`; returns whether it was there.
/// The first `max` of `items` joined for a condition message, and how many more there are.
pub fn list(items: &[String], max: usize) -> String {
    let mut msg = items.iter().take(max).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > max {
        msg.push_str(&format!("; and {} more", items.len() - max));
    }
    msg
}

pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of `type_`, if set.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut c = Vec::new();
        assert!(set(
            &mut c,
            "Ready",
            Status::False,
            "Unreachable",
            "down",
            Some(1),
            t(10)
        ));
        assert!(set(
            &mut c,
            "Ready",
            Status::False,
            "Timeout",
            "slow",
            Some(1),
            t(20)
        ));
        assert_eq!(c[0].last_transition_time, Time(t(10)));
        assert!(set(&mut c, "Ready", Status::True, "Synced", "ok", Some(1), t(30)));
        assert_eq!(c[0].last_transition_time, Time(t(30)));
        assert!(
            !set(&mut c, "Ready", Status::True, "Synced", "ok", Some(1), t(40)),
            "no-op"
        );
        assert_eq!(c.len(), 1);
        assert!(is_true(&c, "Ready"));
        assert!(remove(&mut c, "Ready"));
        assert!(!remove(&mut c, "Ready"));
    }
}
