//! The Notification's status as a state machine: what to do next, and each
//! transition as a pure function of the status. The IO edge (mod.rs) writes every
//! transition to the API server before it does what comes after it.
//!
//! Per recipient: `Pending` → (`Sending` →) `Sent` | `Failed`, or back to `Pending`
//! after a transient failure. `Sending` is written after the SMTP server accepted the
//! recipient and the DATA command and before the content and the final dot go out; a
//! process that finds `Sending` left by another (crashed) one records it as sent and
//! does not send again.

use crate::api::conditions::{self, Status};
use crate::api::notification::{
    DeliveryResult, Notification, NotificationPhase, NotificationStatus, RecipientStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

use super::recipients::{Resolution, instance_label};

pub const TEMPLATE_VALID: &str = "TemplateValid";
pub const RESOLVED: &str = "Resolved";
pub const DELIVERED: &str = "Delivered";

/// Said of a mail a crashed process left in `Sending`.
pub const INTERRUPTED: &str = "the operator stopped after the SMTP server had taken this mail and before its answer was recorded; it was most likely delivered and is not sent again, so that no one gets two copies";

/// What the controller does next with a Notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Resolve the recipients, check the templates, and freeze the list in status.
    Resolve,
    /// Recipients left in `Sending` by a process that stopped: record them as sent.
    Settle,
    /// Mail the recipient at this index.
    Send(usize),
    /// Everyone has a result: write the final phase.
    Finish,
    /// Nothing until the spec changes.
    Idle,
}

pub fn next(n: &Notification) -> Next {
    let Some(status) = &n.status else {
        return Next::Resolve;
    };
    if status.recipients.is_empty() {
        // Not frozen: a failure before sending (template error, nobody to mail) is
        // final for this generation; an edit asks again.
        let evaluated =
            status.observed_generation.is_some() && status.observed_generation == n.metadata.generation;
        return if evaluated && status.phase == NotificationPhase::Failed {
            Next::Idle
        } else {
            Next::Resolve
        };
    }
    if status
        .recipients
        .iter()
        .any(|r| r.result == DeliveryResult::Sending)
    {
        return Next::Settle;
    }
    if let Some(i) = status
        .recipients
        .iter()
        .position(|r| r.result == DeliveryResult::Pending)
    {
        return Next::Send(i);
    }
    if status.phase == NotificationPhase::Sending || status.phase == NotificationPhase::Pending {
        Next::Finish
    } else {
        Next::Idle
    }
}

/// How long to wait after a recipient's `attempts`-th transient failure.
pub fn retry_delay(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(5);
    Duration::from_secs(2u64 << exp).min(Duration::from_secs(60))
}

fn set(
    status: &mut NotificationStatus,
    type_: &str,
    s: Status,
    reason: &str,
    msg: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    conditions::set(&mut status.conditions, type_, s, reason, msg, generation, now);
}

/// A template that does not compile or render: nothing is sent.
pub fn template_failed(n: &Notification, message: &str, now: Timestamp) -> NotificationStatus {
    let mut s = n.status.clone().unwrap_or_default();
    let g = n.metadata.generation;
    set(
        &mut s,
        TEMPLATE_VALID,
        Status::False,
        "TemplateError",
        message,
        g,
        now,
    );
    set(
        &mut s,
        DELIVERED,
        Status::False,
        "TemplateError",
        "nothing was sent: fix the template",
        g,
        now,
    );
    if s.recipients.is_empty() {
        s.phase = NotificationPhase::Failed;
        s.observed_generation = g;
    }
    s
}

/// Recipients cannot be resolved yet (a named cluster was never read).
pub fn waiting(n: &Notification, message: &str, now: Timestamp) -> NotificationStatus {
    let mut s = n.status.clone().unwrap_or_default();
    set(
        &mut s,
        RESOLVED,
        Status::False,
        "WaitingForInventory",
        message,
        n.metadata.generation,
        now,
    );
    s.phase = NotificationPhase::Pending;
    s
}

fn summary(res: &Resolution) -> String {
    let mut m = format!("{} address(es)", res.recipients.len());
    if !res.skipped.is_empty() {
        m.push_str(&format!(", {} skipped (see status.skipped)", res.skipped.len()));
    }
    m
}

/// Freezes the resolved recipients: from here on the spec's selectors are not read
/// again, so editing the Notification does not mail anyone a second time.
pub fn freeze(n: &Notification, res: &Resolution, now: Timestamp) -> NotificationStatus {
    let mut s = n.status.clone().unwrap_or_default();
    let g = n.metadata.generation;
    s.observed_generation = g;
    s.skipped = res.skipped.clone();
    s.recipient_count = res.recipients.len() as u32;
    s.recipients = res
        .recipients
        .iter()
        .map(|r| RecipientStatus {
            address: r.address.clone(),
            user: Some(r.user.clone()),
            result: DeliveryResult::Pending,
            instances: r.instances.iter().map(instance_label).collect(),
            ..Default::default()
        })
        .collect();
    set(
        &mut s,
        TEMPLATE_VALID,
        Status::True,
        "Rendered",
        "subject and body render for every recipient",
        g,
        now,
    );
    if s.recipients.is_empty() {
        s.phase = NotificationPhase::Failed;
        set(
            &mut s,
            RESOLVED,
            Status::False,
            "NoRecipients",
            format!("nobody to mail: {}", summary(res)),
            g,
            now,
        );
        set(
            &mut s,
            DELIVERED,
            Status::False,
            "NoRecipients",
            "nothing was sent",
            g,
            now,
        );
    } else {
        s.phase = NotificationPhase::Sending;
        set(&mut s, RESOLVED, Status::True, "Resolved", summary(res), g, now);
        set(&mut s, DELIVERED, Status::False, "Sending", "sending", g, now);
    }
    s
}

/// Counts one more attempt at recipient `i`.
pub fn attempt(s: &mut NotificationStatus, i: usize, now: Timestamp) {
    let r = &mut s.recipients[i];
    r.attempts += 1;
    r.time = Some(Time(now));
}

/// The server accepted the recipient and DATA: the content goes out next.
pub fn sending(s: &mut NotificationStatus, i: usize, now: Timestamp) {
    let r = &mut s.recipients[i];
    r.result = DeliveryResult::Sending;
    r.message = None;
    r.time = Some(Time(now));
}

/// The server took the mail.
pub fn sent(s: &mut NotificationStatus, i: usize, now: Timestamp, message: Option<String>) {
    let r = &mut s.recipients[i];
    r.result = DeliveryResult::Sent;
    r.message = message;
    r.time = Some(Time(now));
    s.sent_time = Some(Time(now));
}

/// The `Delivered` condition while a batch goes on: how far it is (this also clears a
/// `Retrying` or a settings problem once mail flows again).
pub fn progress(s: &mut NotificationStatus, generation: Option<i64>, now: Timestamp) {
    let done = s
        .recipients
        .iter()
        .filter(|r| matches!(r.result, DeliveryResult::Sent | DeliveryResult::Failed))
        .count();
    let total = s.recipients.len();
    set(
        s,
        DELIVERED,
        Status::False,
        "Sending",
        format!("{done} of {total} recipient(s) done"),
        generation,
        now,
    );
}

/// The server refused the mail for good.
pub fn failed(s: &mut NotificationStatus, i: usize, now: Timestamp, message: String) {
    let r = &mut s.recipients[i];
    r.result = DeliveryResult::Failed;
    r.message = Some(message);
    r.time = Some(Time(now));
}

/// A transient failure: the recipient stays pending and the batch waits.
pub fn retry_later(
    s: &mut NotificationStatus,
    i: usize,
    generation: Option<i64>,
    now: Timestamp,
    message: String,
    delay: Duration,
) {
    let r = &mut s.recipients[i];
    r.result = DeliveryResult::Pending;
    r.message = Some(message.clone());
    set(
        s,
        DELIVERED,
        Status::False,
        "Retrying",
        format!("{message}; trying again in {}s", delay.as_secs()),
        generation,
        now,
    );
}

/// No mail can go out (no SMTP settings, or settings an admin must fix).
pub fn blocked(
    s: &mut NotificationStatus,
    generation: Option<i64>,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    set(s, DELIVERED, Status::False, reason, message, generation, now);
}

/// How old a `Sending` mark must be before it counts as left behind by a stopped
/// process: longer than a live process takes from writing it to recording the result
/// (the commit is bounded by `COMMIT_TIMEOUT` in mod.rs, the result write by its
/// retries). Younger marks may belong to another live operator: wait for them.
pub const SETTLE_AFTER: Duration = Duration::from_secs(30);

/// How long until every `Sending` mark is old enough to settle; `None`: now.
pub fn settle_wait(s: &NotificationStatus, now: Timestamp) -> Option<Duration> {
    s.recipients
        .iter()
        .filter(|r| r.result == DeliveryResult::Sending)
        .filter_map(|r| {
            let age = r
                .time
                .as_ref()
                .map(|t| now.duration_since(t.0))
                .unwrap_or_default();
            let age = Duration::try_from(age).unwrap_or_default();
            SETTLE_AFTER.checked_sub(age).filter(|left| !left.is_zero())
        })
        .max()
}

/// Recipients a stopped process left in `Sending` count as sent (see [`INTERRUPTED`]).
pub fn settle(s: &mut NotificationStatus, now: Timestamp) {
    for r in s
        .recipients
        .iter_mut()
        .filter(|r| r.result == DeliveryResult::Sending)
    {
        r.result = DeliveryResult::Sent;
        r.message = Some(INTERRUPTED.into());
        s.sent_time = Some(r.time.clone().unwrap_or(Time(now)));
    }
}

/// The phase once no recipient is pending.
pub fn final_phase(recipients: &[RecipientStatus]) -> NotificationPhase {
    let sent = recipients
        .iter()
        .filter(|r| r.result == DeliveryResult::Sent)
        .count();
    match sent {
        0 => NotificationPhase::Failed,
        n if n == recipients.len() => NotificationPhase::Sent,
        _ => NotificationPhase::PartiallyFailed,
    }
}

/// Writes the final phase and the `Delivered` condition.
pub fn finish(s: &mut NotificationStatus, generation: Option<i64>, now: Timestamp) {
    s.phase = final_phase(&s.recipients);
    let failed = s
        .recipients
        .iter()
        .filter(|r| r.result == DeliveryResult::Failed)
        .count();
    let total = s.recipients.len();
    let (status, reason, message) = match s.phase {
        NotificationPhase::Sent => (
            Status::True,
            "AllSent",
            format!("mailed all {total} recipient(s)"),
        ),
        NotificationPhase::PartiallyFailed => (
            Status::False,
            "SomeFailed",
            format!("{failed} of {total} recipient(s) refused; see status.recipients"),
        ),
        _ => (
            Status::False,
            "AllFailed",
            format!("all {total} recipient(s) refused; see status.recipients"),
        ),
    };
    set(s, DELIVERED, status, reason, message, generation, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::notification::{NotificationSpec, Recipients};
    use crate::controllers::notification::recipients::Resolved;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn notification(generation: i64, status: Option<NotificationStatus>) -> Notification {
        let mut n = Notification::new(
            "n",
            NotificationSpec {
                subject: "s".into(),
                body: "b".into(),
                recipients: Recipients {
                    users: vec!["alice".into()],
                    ..Default::default()
                },
            },
        );
        n.metadata.generation = Some(generation);
        n.status = status;
        n
    }

    fn resolution(addresses: &[&str]) -> Resolution {
        Resolution {
            recipients: addresses
                .iter()
                .map(|a| Resolved {
                    address: a.to_string(),
                    user: a.split('@').next().unwrap().to_string(),
                    instances: vec![("c1".into(), format!("{a}.vm"))],
                })
                .collect(),
            skipped: vec![],
        }
    }

    #[test]
    fn a_batch_goes_pending_sending_sent_in_order() {
        let mut n = notification(1, None);
        assert_eq!(next(&n), Next::Resolve);
        n.status = Some(freeze(&n, &resolution(&["a@x.org", "b@x.org"]), t(1)));
        let s = n.status.as_ref().unwrap();
        assert_eq!(s.phase, NotificationPhase::Sending);
        assert_eq!(s.recipient_count, 2);
        assert_eq!(s.recipients[0].instances, vec!["c1/a@x.org.vm"]);
        assert_eq!(next(&n), Next::Send(0));

        let s = n.status.as_mut().unwrap();
        attempt(s, 0, t(2));
        sending(s, 0, t(2));
        assert_eq!(
            next(&n),
            Next::Settle,
            "a Sending left behind is settled, never resent"
        );
        let s = n.status.as_mut().unwrap();
        sent(s, 0, t(3), None);
        progress(s, Some(1), t(3));
        let c = conditions::get(&s.conditions, DELIVERED).unwrap();
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("Sending", "1 of 2 recipient(s) done")
        );
        assert_eq!(next(&n), Next::Send(1));
        let s = n.status.as_mut().unwrap();
        attempt(s, 1, t(4));
        failed(s, 1, t(4), "550 no such user".into());
        assert_eq!(next(&n), Next::Finish);
        let s = n.status.as_mut().unwrap();
        finish(s, Some(1), t(5));
        assert_eq!(s.phase, NotificationPhase::PartiallyFailed);
        assert_eq!(s.sent_time, Some(Time(t(3))));
        assert_eq!(next(&n), Next::Idle);
    }

    #[test]
    fn an_edit_after_freezing_resolves_nothing_again() {
        let mut n = notification(1, None);
        n.status = Some(freeze(&n, &resolution(&["a@x.org"]), t(1)));
        let s = n.status.as_mut().unwrap();
        sent(s, 0, t(2), None);
        finish(s, Some(1), t(3));
        n.metadata.generation = Some(2);
        assert_eq!(next(&n), Next::Idle);
    }

    #[test]
    fn a_template_error_is_final_for_its_generation_only() {
        let mut n = notification(1, None);
        n.status = Some(template_failed(&n, "body: syntax error (line 1)", t(1)));
        let s = n.status.as_ref().unwrap();
        assert_eq!(s.phase, NotificationPhase::Failed);
        assert!(s.recipients.is_empty());
        assert!(!conditions::is_true(&s.conditions, TEMPLATE_VALID));
        assert_eq!(next(&n), Next::Idle);
        n.metadata.generation = Some(2);
        assert_eq!(next(&n), Next::Resolve, "a fixed template is tried again");
    }

    #[test]
    fn nobody_to_mail_fails_without_freezing() {
        let mut n = notification(1, None);
        n.status = Some(freeze(&n, &resolution(&[]), t(1)));
        assert_eq!(n.status.as_ref().unwrap().phase, NotificationPhase::Failed);
        assert_eq!(next(&n), Next::Idle);
    }

    #[test]
    fn interrupted_sends_are_settled_as_sent_with_a_note() {
        let mut n = notification(1, None);
        n.status = Some(freeze(&n, &resolution(&["a@x.org", "b@x.org"]), t(1)));
        let s = n.status.as_mut().unwrap();
        attempt(s, 0, t(2));
        sending(s, 0, t(2));
        assert_eq!(
            settle_wait(s, t(12)),
            Some(Duration::from_secs(20)),
            "maybe a live process's"
        );
        assert_eq!(settle_wait(s, t(32)), None);
        settle(s, t(32));
        assert_eq!(s.recipients[0].result, DeliveryResult::Sent);
        assert_eq!(s.recipients[0].message.as_deref(), Some(INTERRUPTED));
        assert_eq!(s.sent_time, Some(Time(t(2))));
        assert_eq!(next(&n), Next::Send(1));
    }

    #[test]
    fn transient_failures_keep_the_recipient_pending_with_growing_delays() {
        let mut n = notification(1, None);
        n.status = Some(freeze(&n, &resolution(&["a@x.org"]), t(1)));
        let s = n.status.as_mut().unwrap();
        attempt(s, 0, t(2));
        retry_later(s, 0, Some(1), t(2), "connection refused".into(), retry_delay(1));
        assert_eq!(s.recipients[0].result, DeliveryResult::Pending);
        assert_eq!(s.recipients[0].attempts, 1);
        assert_eq!(next(&n), Next::Send(0));
        let delays: Vec<u64> = (1..=8).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn final_phases() {
        let r = |result| RecipientStatus {
            result,
            ..Default::default()
        };
        use DeliveryResult::*;
        assert_eq!(final_phase(&[r(Sent), r(Sent)]), NotificationPhase::Sent);
        assert_eq!(
            final_phase(&[r(Sent), r(Failed)]),
            NotificationPhase::PartiallyFailed
        );
        assert_eq!(final_phase(&[r(Failed)]), NotificationPhase::Failed);
    }
}
