//! Service statistics from the InstanceApplications that exist (ganetimgr's statistics
//! view): applications by cluster, phase and outcome reason, and how long filing took
//! to a decision and to a VM. Rendered at scrape time from the application
//! controller's store, so every replica that leads tells the same figures, whatever
//! happened before it started leading; deleting an application removes it from them.

use super::text::{Out, header, push_labels, push_u64};
use crate::api::application::{InstanceApplication, Phase};
use crate::api::conditions;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Upper bounds (seconds) of the waiting-time buckets: 1 min, 5 min, 15 min, 1 h, 4 h,
/// 1 day, 3 days, 1 week. Decisions by people take minutes to days.
pub const BUCKETS: [u64; 8] = [60, 300, 900, 3600, 14_400, 86_400, 259_200, 604_800];

/// The condition whose reason says why an application is where it is: an admin's
/// rejection is `Decided`, a failed creation `InstanceCreated` (the application
/// controller's condition types).
pub fn outcome_reason(app: &InstanceApplication) -> &str {
    let Some(status) = &app.status else { return "" };
    let type_ = match status.phase {
        Phase::Rejected => "Decided",
        Phase::Failed => "InstanceCreated",
        _ => return "",
    };
    conditions::get(&status.conditions, type_).map_or("", |c| c.reason.as_str())
}

pub fn cluster_of(app: &InstanceApplication) -> &str {
    app.status
        .as_ref()
        .and_then(|s| s.cluster.as_deref())
        .or(app.spec.cluster.as_deref())
        .unwrap_or("")
}

/// Seconds from filing (creation) to the decision in force (`Decided` became true) and
/// to the VM's creation, where known.
pub fn waits(app: &InstanceApplication) -> (Option<u64>, Option<u64>) {
    let Some(filed) = app.metadata.creation_timestamp.as_ref().map(|t| t.0) else {
        return (None, None);
    };
    let Some(status) = &app.status else {
        return (None, None);
    };
    let since = |t: k8s_openapi::jiff::Timestamp| u64::try_from(t.duration_since(filed).as_secs()).ok();
    let decided = conditions::get(&status.conditions, "Decided")
        .filter(|c| c.status == "True")
        .and_then(|c| since(c.last_transition_time.0));
    let created = status.created_time.as_ref().and_then(|t| since(t.0));
    (decided, created)
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: u64) {
        for (bound, n) in BUCKETS.iter().zip(&mut self.buckets) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut impl Out, name: &str, cluster: &str) {
        let mut labels = String::new();
        push_labels(&mut labels, &[("cluster", cluster)]);
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Appends `ganeti_applications`, `ganeti_application_decision_seconds` and
/// `ganeti_application_creation_seconds`.
pub fn render_applications(apps: &[Arc<InstanceApplication>], out: &mut impl Out) {
    let mut by_phase: BTreeMap<(&str, &'static str, &str), u64> = BTreeMap::new();
    let mut decision: BTreeMap<&str, Histogram> = BTreeMap::new();
    let mut creation: BTreeMap<&str, Histogram> = BTreeMap::new();
    for app in apps {
        let cluster = cluster_of(app);
        // Every phase of a cluster with applications appears, 0 when none.
        for phase in Phase::ALL {
            by_phase.entry((cluster, phase_name(phase), "")).or_default();
        }
        let phase = app.status.as_ref().map(|s| s.phase).unwrap_or_default();
        *by_phase
            .entry((cluster, phase_name(phase), outcome_reason(app)))
            .or_default() += 1;
        // Every cluster with applications has both histograms, zeros included: a
        // dashboard then shows "none decided yet" rather than "no data".
        let (decided, created) = waits(app);
        let d = decision.entry(cluster).or_default();
        if let Some(s) = decided {
            d.observe(s);
        }
        let c = creation.entry(cluster).or_default();
        if let Some(s) = created {
            c.observe(s);
        }
    }
    header(
        out,
        "ganeti_applications",
        "InstanceApplications that exist, by cluster, phase and (rejected or failed) the condition's reason.",
    );
    for ((cluster, phase, reason), n) in &by_phase {
        out.push_str("ganeti_applications{");
        push_labels(out, &[("cluster", cluster), ("phase", phase), ("reason", reason)]);
        out.push_str("} ");
        push_u64(out, *n);
        out.push('\n');
    }
    for (name, help, per_cluster) in [
        (
            "ganeti_application_decision_seconds",
            "Time from filing to the decision in force, over the decided applications that exist.",
            &decision,
        ),
        (
            "ganeti_application_creation_seconds",
            "Time from filing to the VM's creation, over the created applications that exist.",
            &creation,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (cluster, h) in per_cluster {
            h.render(out, name, cluster);
        }
    }
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Approved => "Approved",
        Phase::Creating => "Creating",
        Phase::Created => "Created",
        Phase::Rejected => "Rejected",
        Phase::Failed => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::application::InstanceApplicationStatus;
    use crate::api::conditions::{Status, set};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    fn filed() -> Timestamp {
        "2026-11-01T00:00:00Z".parse().unwrap()
    }

    /// An application on `cluster` in `phase`, decided (`reason`) `decided_after`
    /// seconds after filing and created `created_after` seconds after.
    fn app(
        cluster: Option<&str>,
        phase: Phase,
        decided: Option<(&str, i64)>,
        created_after: Option<i64>,
    ) -> Arc<InstanceApplication> {
        let mut a = InstanceApplication::for_tests(cluster, filed());
        let mut status = InstanceApplicationStatus {
            phase,
            ..Default::default()
        };
        let at = |s: i64| filed() + SignedDuration::from_secs(s);
        if let Some((reason, after)) = decided {
            set(
                &mut status.conditions,
                "Decided",
                Status::True,
                reason,
                "",
                None,
                at(after),
            );
        }
        if phase == Phase::Failed {
            set(
                &mut status.conditions,
                "InstanceCreated",
                Status::False,
                "GanetiJobFailed",
                "",
                None,
                at(1),
            );
        }
        status.created_time = created_after.map(|s| Time(at(s)));
        a.status = Some(status);
        Arc::new(a)
    }

    #[test]
    fn applications_are_counted_by_outcome_and_timed_from_filing() {
        let apps = vec![
            app(Some("lab"), Phase::Pending, None, None),
            app(Some("lab"), Phase::Created, Some(("Approved", 120)), Some(200)),
            app(Some("lab"), Phase::Created, Some(("AutoApproved", 0)), Some(30)),
            app(Some("lab"), Phase::Rejected, Some(("Rejected", 90_000)), None),
            app(Some("lab"), Phase::Failed, Some(("Approved", 400)), None),
            app(None, Phase::Pending, None, None),
        ];
        let mut out = String::new();
        render_applications(&apps, &mut out);
        for line in [
            "ganeti_applications{cluster=\"lab\",phase=\"Pending\",reason=\"\"} 1\n",
            "ganeti_applications{cluster=\"lab\",phase=\"Created\",reason=\"\"} 2\n",
            "ganeti_applications{cluster=\"lab\",phase=\"Rejected\",reason=\"Rejected\"} 1\n",
            "ganeti_applications{cluster=\"lab\",phase=\"Failed\",reason=\"GanetiJobFailed\"} 1\n",
            "ganeti_applications{cluster=\"\",phase=\"Pending\",reason=\"\"} 1\n",
            "ganeti_applications{cluster=\"\",phase=\"Failed\",reason=\"\"} 0\n",
            // Decided after 0 s, 120 s, 400 s and 25 h.
            "ganeti_application_decision_seconds_bucket{cluster=\"lab\",le=\"60\"} 1\n",
            "ganeti_application_decision_seconds_bucket{cluster=\"lab\",le=\"300\"} 2\n",
            "ganeti_application_decision_seconds_bucket{cluster=\"lab\",le=\"900\"} 3\n",
            "ganeti_application_decision_seconds_bucket{cluster=\"lab\",le=\"86400\"} 3\n",
            "ganeti_application_decision_seconds_bucket{cluster=\"lab\",le=\"259200\"} 4\n",
            "ganeti_application_decision_seconds_bucket{cluster=\"lab\",le=\"+Inf\"} 4\n",
            "ganeti_application_decision_seconds_sum{cluster=\"lab\"} 90520\n",
            "ganeti_application_decision_seconds_count{cluster=\"lab\"} 4\n",
            "ganeti_application_creation_seconds_bucket{cluster=\"lab\",le=\"60\"} 1\n",
            "ganeti_application_creation_seconds_bucket{cluster=\"lab\",le=\"300\"} 2\n",
            "ganeti_application_creation_seconds_count{cluster=\"lab\"} 2\n",
            "# TYPE ganeti_application_creation_seconds histogram\n",
            // No application of the unnamed cluster is decided yet: zeros, not nothing.
            "ganeti_application_decision_seconds_count{cluster=\"\"} 0\n",
            "ganeti_application_creation_seconds_bucket{cluster=\"\",le=\"+Inf\"} 0\n",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
    }
}
