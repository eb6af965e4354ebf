//! `GET /events`: the caller's timeline, from Kubernetes Events. Pure: the handler lists
//! the Events and applications and passes the authorization decision in.
//!
//! Two sources:
//! - VM action audit Events (written by [`audit_event`] in the namespace `default`, as
//!   Events of cluster-scoped objects go): `regarding` is the GanetiCluster, `related`
//!   the VM (`kind: GanetiInstance`, `name`: the Ganeti instance name), `action` the VM
//!   action, and the annotations `ganeti.dev/user` and `ganeti.dev/job` who did it and
//!   which job it became. So `kubectl get events --field-selector
//!   regarding.name=<cluster>,reason=VmActionRefused` narrows on the server, and the VM
//!   is a field to filter on (`related.name`) rather than text in the note. Shown to
//!   whoever may view the VM, and to the user who acted (a destroyed VM has no owner
//!   left to decide by).
//! - The InstanceApplication controller's Events: shown to the applicant and to the
//!   owner (the user, or members of the group). Events of deleted applications are not
//!   shown: nothing tells whose they were.

use super::Attempt;
use crate::api::InstanceApplication;
use crate::authz::Principal;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// `related.kind` of a VM action Event: a Ganeti instance (not a Kubernetes object).
pub const VM_KIND: &str = "GanetiInstance";
pub const REASON_ALLOWED: &str = "VmActionAllowed";
pub const REASON_REFUSED: &str = "VmActionRefused";
/// Annotations of a VM action Event.
pub const USER_ANNOTATION: &str = "ganeti.dev/user";
pub const JOB_ANNOTATION: &str = "ganeti.dev/job";
/// Server-side narrowing of the two lists (`related` cannot be selected on).
pub const VM_EVENTS_SELECTOR: &str = "reportingController=ganeti-operator,regarding.kind=GanetiCluster";
pub const APPLICATION_EVENTS_SELECTOR: &str =
    "reportingController=ganeti-operator,regarding.kind=InstanceApplication";
/// Entries of one answer: by default and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 500;

fn api_version() -> String {
    format!("{}/{}", crate::api::GROUP, crate::api::VERSION)
}

/// The audit Event of one attempt: one Event each (not kube's Recorder, which folds
/// Events with the same reason on the same object into one series and keeps the first
/// note: another user's attempt would vanish into it).
pub fn audit_event(
    user: &str,
    attempt: &Attempt<'_>,
    job: Option<u64>,
    allowed: bool,
    why: &str,
    now: Timestamp,
) -> Event {
    let note = match job {
        Some(j) => format!("{user} {} {}: job {j}", attempt.action, attempt.vm),
        None => format!("{user} {} {}: {why}", attempt.action, attempt.vm),
    };
    let mut annotations = BTreeMap::from([(USER_ANNOTATION.to_string(), user.to_string())]);
    if let Some(j) = job {
        annotations.insert(JOB_ANNOTATION.to_string(), j.to_string());
    }
    Event {
        metadata: ObjectMeta {
            // Always a valid name, whatever the cluster is called.
            generate_name: Some("vm-action-".into()),
            namespace: Some(super::CLUSTER_EVENTS_NAMESPACE.to_string()),
            annotations: Some(annotations),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(if allowed { "Normal" } else { "Warning" }.into()),
        reason: Some(if allowed { REASON_ALLOWED } else { REASON_REFUSED }.into()),
        action: Some(attempt.action.to_string()),
        // Event notes are limited to 1 kB.
        note: Some(note.chars().take(1000).collect()),
        regarding: Some(ObjectReference {
            api_version: Some(api_version()),
            kind: Some("GanetiCluster".into()),
            name: Some(attempt.cluster.to_string()),
            ..Default::default()
        }),
        // An action on the cluster itself (its tags) relates to no VM.
        related: (!attempt.vm.is_empty()).then(|| ObjectReference {
            api_version: Some(api_version()),
            kind: Some(VM_KIND.into()),
            name: Some(attempt.vm.to_string()),
            // The VM's Ganeti UUID: which VM it was, whatever it is called later.
            uid: attempt.uuid.map(str::to_string),
            ..Default::default()
        }),
        reporting_controller: Some(crate::api::FIELD_MANAGER.into()),
        reporting_instance: Some(crate::api::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// `?limit=N` (1 to [`MAX_LIMIT`]); any other parameter is a mistake worth a 400.
pub fn limit(query: Option<&str>) -> Result<usize, String> {
    let mut limit = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != "limit" {
            return Err(format!("unknown parameter {key:?}; the only one is limit"));
        }
        if limit.is_some() {
            return Err("limit is given twice".into());
        }
        let n: usize = value
            .parse()
            .map_err(|_| format!("limit {value:?} is not a number"))?;
        if !(1..=MAX_LIMIT).contains(&n) {
            return Err(format!("limit is 1 to {MAX_LIMIT}, not {n}"));
        }
        limit = Some(n);
    }
    Ok(limit.unwrap_or(DEFAULT_LIMIT))
}

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When it last happened (RFC 3339).
    pub time: String,
    /// `vmAction` or `application`.
    pub source: &'static str,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
    /// How often it happened (Events of the same kind are folded into series).
    pub count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<ApplicationRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplicationRef {
    pub namespace: String,
    pub name: String,
}

/// When the Event last happened: its series, its time, or (old-style Events) its
/// timestamps.
fn last_seen(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn entry(e: &Event, source: &'static str) -> Entry {
    Entry {
        time: last_seen(e).map(|t| t.to_string()).unwrap_or_default(),
        source,
        type_: e.type_.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        note: e.note.clone().unwrap_or_default(),
        count: e
            .series
            .as_ref()
            .map(|s| s.count)
            .or(e.deprecated_count)
            .unwrap_or(1),
        cluster: None,
        instance: None,
        action: None,
        user: None,
        job: None,
        application: None,
    }
}

/// A VM action Event as an entry, if it is one and the caller may see it.
fn vm_entry(
    e: &Event,
    caller: &Principal<'_>,
    audit: bool,
    may_view: &impl Fn(&str, &str) -> bool,
) -> Option<Entry> {
    let regarding = e.regarding.as_ref()?;
    let related = e.related.as_ref()?;
    let reason = e.reason.as_deref()?;
    if regarding.kind.as_deref() != Some("GanetiCluster")
        || related.kind.as_deref() != Some(VM_KIND)
        || ![REASON_ALLOWED, REASON_REFUSED].contains(&reason)
    {
        return None;
    }
    let cluster = regarding.name.as_deref()?;
    let vm = related.name.as_deref()?;
    let annotation = |key: &str| e.metadata.annotations.as_ref().and_then(|a| a.get(key));
    let user = annotation(USER_ANNOTATION);
    if !audit && user.map(String::as_str) != Some(caller.user) && !may_view(cluster, vm) {
        return None;
    }
    Some(Entry {
        cluster: Some(cluster.to_string()),
        instance: Some(vm.to_string()),
        action: e.action.clone(),
        user: user.cloned(),
        job: annotation(JOB_ANNOTATION).and_then(|j| j.parse().ok()),
        ..entry(e, "vmAction")
    })
}

/// An application Event as an entry, if the caller filed or owns the application.
fn application_entry(
    e: &Event,
    applications: &[InstanceApplication],
    caller: &Principal<'_>,
    audit: bool,
) -> Option<Entry> {
    let regarding = e.regarding.as_ref()?;
    if regarding.kind.as_deref() != Some("InstanceApplication") {
        return None;
    }
    let (namespace, name) = (regarding.namespace.as_deref()?, regarding.name.as_deref()?);
    // The uid tells a re-created application of the same name from the old one.
    let app = applications.iter().find(|a| {
        a.metadata.namespace.as_deref() == Some(namespace)
            && a.metadata.name.as_deref() == Some(name)
            && (regarding.uid.is_none() || a.metadata.uid == regarding.uid)
    })?;
    let filed = app.spec.applicant.as_deref() == Some(caller.user);
    if !audit && !filed && !caller.is(&app.spec.owner) {
        return None;
    }
    Some(Entry {
        application: Some(ApplicationRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }),
        ..entry(e, "application")
    })
}

/// The caller's timeline, newest first, at most `limit` entries. `may_view(cluster, vm)`:
/// whether the caller holds `vms.view` on the VM. `audit`: the caller holds
/// `system.audit`, and sees every VM action and application Event (the audit trail).
pub fn timeline(
    vm_events: &[Event],
    application_events: &[Event],
    applications: &[InstanceApplication],
    caller: &Principal<'_>,
    audit: bool,
    may_view: impl Fn(&str, &str) -> bool,
    limit: usize,
) -> Vec<Entry> {
    let mut found: Vec<(Option<Timestamp>, Entry)> = vm_events
        .iter()
        .filter_map(|e| vm_entry(e, caller, audit, &may_view).map(|x| (last_seen(e), x)))
        .chain(
            application_events
                .iter()
                .filter_map(|e| application_entry(e, applications, caller, audit).map(|x| (last_seen(e), x))),
        )
        .collect();
    // Newest first; ties (same microsecond) in a stable order.
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.note.cmp(&b.1.note)));
    found.into_iter().take(limit).map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Subject;
    use k8s_openapi::api::events::v1::EventSeries;
    use serde_json::json;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn vm_event(user: &str, action: &str, vm: &str, job: Option<u64>, allowed: bool, secs: i64) -> Event {
        let attempt = Attempt {
            action,
            cluster: "lab",
            vm,
            uuid: None,
        };
        audit_event(user, &attempt, job, allowed, "missing right", at(secs))
    }

    fn application(ns: &str, name: &str, uid: &str, applicant: &str, owner: Subject) -> InstanceApplication {
        let mut app: InstanceApplication = serde_json::from_value(json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "spec": {"hostname": format!("{name}.example.org"), "vcpus": 1, "memory": "1Gi",
                     "disks": [{"size": "1Gi"}], "owner": owner, "purpose": "test"},
        }))
        .unwrap();
        app.spec.applicant = Some(applicant.into());
        app
    }

    fn application_event(ns: &str, name: &str, uid: &str, reason: &str, secs: i64) -> Event {
        Event {
            regarding: Some(ObjectReference {
                kind: Some("InstanceApplication".into()),
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..Default::default()
            }),
            reason: Some(reason.into()),
            note: Some(format!("{name}: {reason}")),
            type_: Some("Normal".into()),
            event_time: Some(MicroTime(at(secs))),
            ..Default::default()
        }
    }

    #[test]
    fn an_audit_event_carries_the_vm_the_user_and_the_job() {
        let e = vm_event("alice", "reboot", "vm1.example.org", Some(42), true, 0);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["regarding"]["kind"], "GanetiCluster");
        assert_eq!(v["regarding"]["name"], "lab");
        assert_eq!(
            v["related"],
            json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiInstance", "name": "vm1.example.org"})
        );
        assert_eq!(v["action"], "reboot");
        assert_eq!(v["reason"], "VmActionAllowed");
        assert_eq!(v["note"], "alice reboot vm1.example.org: job 42");
        assert_eq!(
            v["metadata"]["annotations"],
            json!({"ganeti.dev/user": "alice", "ganeti.dev/job": "42"})
        );
        assert_eq!(v["metadata"]["generateName"], "vm-action-");
        let refused = vm_event("bob", "destroy", "vm1.example.org", None, false, 0);
        assert_eq!(refused.type_.as_deref(), Some("Warning"));
        assert_eq!(
            refused.note.as_deref(),
            Some("bob destroy vm1.example.org: missing right")
        );
        assert!(!refused.metadata.annotations.unwrap().contains_key(JOB_ANNOTATION));
    }

    #[test]
    fn the_limit_parameter_is_checked() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some("")), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some("limit=7")), Ok(7));
        assert_eq!(limit(Some("limit=500")), Ok(500));
        assert!(limit(Some("limit=501")).unwrap_err().contains("1 to 500"));
        assert!(limit(Some("limit=0")).is_err());
        assert!(limit(Some("limit=-1")).unwrap_err().contains("not a number"));
        assert!(limit(Some("limit=ten")).is_err());
        assert!(limit(Some("limit=1&limit=2")).unwrap_err().contains("twice"));
        assert!(limit(Some("limt=5")).unwrap_err().contains("limt"));
    }

    #[test]
    fn the_timeline_shows_what_the_caller_may_see_newest_first() {
        let groups = vec!["team".to_string()];
        let alice = Principal::new("alice", &groups);
        let vm_events = vec![
            vm_event("alice", "reboot", "alice-vm", Some(1), true, 10),
            vm_event("bob", "reboot", "bob-vm", Some(2), true, 20),
            // bob tried alice's VM: she may view it, so she sees it.
            vm_event("bob", "shutdown", "alice-vm", None, false, 30),
            // alice destroyed a VM that is gone (nobody may view it any more): hers.
            vm_event("alice", "destroy", "gone-vm", Some(3), true, 40),
            // Not an audit Event of ours.
            Event {
                reason: Some("Synced".into()),
                ..vm_event("carol", "reboot", "alice-vm", None, true, 50)
            },
        ];
        let apps = vec![
            application("apps-alice", "web", "u1", "alice", Subject::user("alice")),
            application("apps-bob", "db", "u2", "bob", Subject::user("bob")),
            application("apps-carol", "shared", "u3", "carol", Subject::group("team")),
        ];
        let app_events = vec![
            application_event("apps-alice", "web", "u1", "Rejected", 15),
            application_event("apps-bob", "db", "u2", "Rejected", 25),
            application_event("apps-carol", "shared", "u3", "Created", 35),
            // An earlier application of the same name, deleted: not shown.
            application_event("apps-alice", "web", "u0", "Created", 5),
        ];
        let may_view = |cluster: &str, vm: &str| cluster == "lab" && vm == "alice-vm";
        let got = timeline(&vm_events, &app_events, &apps, &alice, false, may_view, 100);
        let notes: Vec<&str> = got.iter().map(|e| e.note.as_str()).collect();
        assert_eq!(
            notes,
            [
                "alice destroy gone-vm: job 3",
                "shared: Created",
                "bob shutdown alice-vm: missing right",
                "web: Rejected",
                "alice reboot alice-vm: job 1",
            ]
        );
        let first = &got[0];
        assert_eq!(
            (first.source, first.cluster.as_deref(), first.instance.as_deref()),
            ("vmAction", Some("lab"), Some("gone-vm"))
        );
        assert_eq!(
            (first.user.as_deref(), first.job, first.action.as_deref()),
            (Some("alice"), Some(3), Some("destroy"))
        );
        assert_eq!(
            got[1].application,
            Some(ApplicationRef {
                namespace: "apps-carol".into(),
                name: "shared".into()
            })
        );
        assert_eq!(
            timeline(&vm_events, &app_events, &apps, &alice, false, may_view, 2).len(),
            2
        );
        // bob: his own things, and his refused attempt on alice's VM.
        let bob = Principal::new("bob", &[]);
        let got = timeline(
            &vm_events,
            &app_events,
            &apps,
            &bob,
            false,
            |_: &str, vm: &str| vm == "bob-vm",
            100,
        );
        let notes: Vec<&str> = got.iter().map(|e| e.note.as_str()).collect();
        assert_eq!(
            notes,
            [
                "bob shutdown alice-vm: missing right",
                "db: Rejected",
                "bob reboot bob-vm: job 2"
            ]
        );
        // An auditor (system.audit) sees the whole trail, VMs it may not view included.
        let auditor = Principal::new("audrey", &[]);
        let got = timeline(
            &vm_events,
            &app_events,
            &apps,
            &auditor,
            true,
            |_: &str, _: &str| false,
            100,
        );
        assert_eq!(got.len(), 7, "{got:#?}");
        let without = timeline(
            &vm_events,
            &app_events,
            &apps,
            &auditor,
            false,
            |_: &str, _: &str| false,
            100,
        );
        assert!(without.is_empty());
    }

    #[test]
    fn a_series_counts_and_dates_by_its_last_occurrence() {
        let mut e = application_event("apps-alice", "web", "u1", "QuotaExceeded", 0);
        e.series = Some(EventSeries {
            count: 4,
            last_observed_time: MicroTime(at(99)),
        });
        let apps = vec![application(
            "apps-alice",
            "web",
            "u1",
            "alice",
            Subject::user("alice"),
        )];
        let got = timeline(
            &[],
            &[e],
            &apps,
            &Principal::new("alice", &[]),
            false,
            |_: &str, _: &str| false,
            10,
        );
        assert_eq!(got[0].count, 4);
        assert_eq!(got[0].time, at(99).to_string());
        let v = serde_json::to_value(&got[0]).unwrap();
        assert_eq!(v["source"], "application");
        assert!(v.get("cluster").is_none(), "{v}");
    }
}
