//! Pure: the status of each RoleBinding and Role, and whether it needs writing.

use super::plan::ClusterReport;
use crate::api::binding::{RoleBinding, RoleBindingStatus};
use crate::api::common::{InstanceRef, Subject};
use crate::api::conditions::{self, Status};
use crate::api::role::{Role, RoleSpec, RoleStatus, ScopeKind};
use crate::authz::{ADMINISTRATOR, preconfigured_roles};
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Entries listed at most in `instancesCovered` and `tagsWritten` (the counts stay
/// exact): a status must stay far below etcd's object size limit.
pub const MAX_LISTED: usize = 2000;
/// Error lines quoted at most in a condition message.
const MAX_ERRORS: usize = 5;

/// Where a cluster's tag sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState<'a> {
    /// Synced; this is what it found.
    Synced(&'a ClusterReport),
    /// Known, but its last sync failed or its inventory is stale.
    Failing(&'a str),
    /// Observed only (`managementPolicy: Observe`): no tags are written there.
    Observed,
}

/// The clusters a binding writes tags on: those of the instances it or its role's
/// `Instances` scope lists.
pub fn tag_clusters(binding: &RoleBinding, role: Option<&RoleSpec>) -> BTreeSet<String> {
    let scoped = role
        .filter(|r| r.scope.kind == ScopeKind::Instances)
        .map(|r| r.scope.instances.as_slice())
        .unwrap_or_default();
    binding
        .spec
        .instances
        .iter()
        .chain(scoped)
        .map(|i| i.cluster.clone())
        .collect()
}

/// The binding's status, or `None` when the current one already says it.
pub fn binding_status(
    binding: &RoleBinding,
    role: Option<&RoleSpec>,
    clusters: &BTreeMap<String, ClusterState<'_>>,
    now: Timestamp,
) -> Option<RoleBindingStatus> {
    let current = binding.status.clone().unwrap_or_default();
    let mut s = current.clone();
    let generation = binding.metadata.generation;
    let name = binding.metadata.name.as_deref().unwrap_or_default();
    let role_name = &binding.spec.role_ref;

    let subjects: BTreeSet<Subject> = binding.spec.subjects.iter().cloned().collect();
    s.subject_count = subjects.len() as u32;
    s.resolved_subjects = subjects.into_iter().collect();
    s.observed_generation = generation;

    let mut tags: Vec<String> = Vec::new();
    let mut instances: Vec<InstanceRef> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut unsynced: Vec<String> = Vec::new();
    let mut observed: Vec<String> = Vec::new();
    for cluster in tag_clusters(binding, role) {
        match clusters.get(&cluster) {
            Some(ClusterState::Synced(report)) => {
                let Some(r) = report.bindings.get(name) else {
                    continue;
                };
                tags.extend(r.tags.iter().map(|(i, t)| format!("{cluster}/{i}: {t}")));
                instances.extend(r.instances.iter().map(|i| InstanceRef {
                    cluster: cluster.clone(),
                    name: i.clone(),
                }));
                errors.extend(r.errors.iter().cloned());
                missing.extend(r.missing.iter().map(|i| format!("{cluster}/{i}")));
            }
            Some(ClusterState::Failing(why)) => unsynced.push(format!("{cluster} ({why})")),
            Some(ClusterState::Observed) => observed.push(cluster),
            None => unsynced.push(format!("{cluster} (no GanetiCluster of that name has been read)")),
        }
    }
    s.tag_count = tags.len() as u32;
    tags.truncate(MAX_LISTED);
    instances.truncate(MAX_LISTED);
    s.tags_written = tags;
    s.instances_covered = instances;

    let role_found = role.is_some();
    let (rf_reason, rf_message) = if role_found {
        ("Found", format!("role {role_name} exists"))
    } else {
        (
            "RoleNotFound",
            format!(
                "role {role_name} does not exist: the binding grants nothing until a Role of that name is created"
            ),
        )
    };
    conditions::set(
        &mut s.conditions,
        "RoleFound",
        role_found.into(),
        rf_reason,
        rf_message,
        generation,
        now,
    );

    let (sync_status, sync_reason, mut sync_message) = if !errors.is_empty() {
        (Status::False, "TagError", conditions::list(&errors, MAX_ERRORS))
    } else if !unsynced.is_empty() {
        (
            Status::Unknown,
            "ClusterNotSynced",
            format!("tags not checked on {}", unsynced.join(", ")),
        )
    } else if s.tag_count == 0 && !observed.is_empty() {
        (
            Status::True,
            "ObservedOnly",
            format!(
                "no tags are written on {}: observed only (managementPolicy: Observe); the binding still grants its rights there",
                observed.join(", ")
            ),
        )
    } else if s.tag_count == 0 {
        (
            Status::True,
            "NoTags",
            "the binding lists no instance its role reaches, so it implies no Ganeti tags".to_owned(),
        )
    } else {
        (
            Status::True,
            "Synced",
            format!(
                "{} tags on {} instances are in Ganeti",
                s.tag_count,
                s.instances_covered.len()
            ),
        )
    };
    if !observed.is_empty() && sync_reason != "ObservedOnly" {
        sync_message.push_str(&format!(
            "; none written on {} (observed only, managementPolicy: Observe)",
            observed.join(", ")
        ));
    }
    if !missing.is_empty() {
        missing.truncate(MAX_ERRORS);
        sync_message.push_str(&format!("; listed but not in Ganeti: {}", missing.join(", ")));
    }
    conditions::set(
        &mut s.conditions,
        "TagsInSync",
        sync_status,
        sync_reason,
        sync_message.clone(),
        generation,
        now,
    );
    let (ready, ready_reason, ready_message) = match (role_found, sync_status) {
        (false, _) => (
            Status::False,
            rf_reason,
            format!("role {role_name} does not exist"),
        ),
        (true, Status::True) if !observed.is_empty() => {
            (Status::True, "Ready", format!("role found; {sync_message}"))
        }
        (true, Status::True) => (Status::True, "Ready", "role found, tags in sync".to_owned()),
        (true, other) => (other, sync_reason, sync_message),
    };
    conditions::set(
        &mut s.conditions,
        "Ready",
        ready,
        ready_reason,
        ready_message,
        generation,
        now,
    );
    (s != current).then_some(s)
}

/// The role's status, or `None` when the current one already says it.
/// `administrator_bound`: some binding makes someone the administrator.
pub fn role_status(
    role: &Role,
    bindings: &[&RoleBinding],
    administrator_bound: bool,
    now: Timestamp,
) -> Option<RoleStatus> {
    let current = role.status.clone().unwrap_or_default();
    let mut s = current.clone();
    let name = role.metadata.name.as_deref().unwrap_or_default();
    let generation = role.metadata.generation;
    s.observed_generation = generation;
    let bound_by: BTreeSet<String> = bindings
        .iter()
        .filter(|b| b.spec.role_ref == name)
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    s.binding_count = bound_by.len() as u32;
    s.bound_by = bound_by.into_iter().take(MAX_LISTED).collect();

    if let Some(builtin) = preconfigured_roles()
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
    {
        let (status, reason, message) = if builtin.spec == role.spec {
            (
                Status::True,
                "Builtin",
                "a preconfigured role: defined by the operator, which admission keeps unchanged".to_owned(),
            )
        } else {
            (
                Status::False,
                "DiffersFromBuiltin",
                "this object's rights differ from the preconfigured role's; the operator uses the preconfigured definition (see examples/10-roles-preconfigured.yaml)".to_owned(),
            )
        };
        conditions::set(
            &mut s.conditions,
            "Preconfigured",
            status,
            reason,
            message,
            generation,
            now,
        );
    }
    if name == ADMINISTRATOR {
        let (status, reason, message) = if administrator_bound {
            (
                Status::True,
                "Bound",
                "at least one RoleBinding makes someone the administrator".to_owned(),
            )
        } else {
            (
                Status::False,
                "NoAdministratorBinding",
                "no RoleBinding binds administrator without narrowing it to clusters or instances: nobody administers the service. Bind a group of admins to it (see examples/20-bindings.yaml)".to_owned(),
            )
        };
        conditions::set(
            &mut s.conditions,
            "AdministratorBound",
            status,
            reason,
            message,
            generation,
            now,
        );
    }
    (s != current).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::binding::RoleBindingSpec;
    use crate::controllers::tags::plan::BindingReport;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn binding(name: &str, role: &str, instances: &[(&str, &str)]) -> RoleBinding {
        let mut b = RoleBinding::new(
            name,
            RoleBindingSpec {
                role_ref: role.into(),
                subjects: vec![Subject::user("bob"), Subject::group("ops"), Subject::user("bob")],
                clusters: vec![],
                instances: instances
                    .iter()
                    .map(|(c, n)| InstanceRef {
                        cluster: c.to_string(),
                        name: n.to_string(),
                    })
                    .collect(),
            },
        );
        b.metadata.generation = Some(3);
        b
    }

    fn role_spec() -> RoleSpec {
        preconfigured_roles().remove(2).spec
    }

    fn cond<'a>(
        c: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        t: &str,
    ) -> (&'a str, &'a str, &'a str) {
        let c = conditions::get(c, t).unwrap_or_else(|| panic!("no {t}"));
        (&c.status, &c.reason, &c.message)
    }

    #[test]
    fn synced_binding_lists_tags_and_is_ready_then_unchanged() {
        let b = binding("bob-power", "power", &[("c1", "vm1"), ("c2", "vm9")]);
        let mut report = ClusterReport::default();
        report.bindings.insert(
            "bob-power".into(),
            BindingReport {
                tags: BTreeSet::from([("vm1".to_string(), "GANETI_WEB_MANAGER:power:U:bob".to_string())]),
                instances: BTreeSet::from(["vm1".to_string()]),
                ..BindingReport::default()
            },
        );
        let mut empty = ClusterReport::default();
        empty.bindings.insert(
            "bob-power".into(),
            BindingReport {
                missing: BTreeSet::from(["vm9".to_string()]),
                ..BindingReport::default()
            },
        );
        let clusters = BTreeMap::from([
            ("c1".to_string(), ClusterState::Synced(&report)),
            ("c2".to_string(), ClusterState::Synced(&empty)),
        ]);
        let role = role_spec();
        let s = binding_status(&b, Some(&role), &clusters, now()).expect("first write");
        assert_eq!(s.subject_count, 2);
        assert_eq!(
            s.resolved_subjects,
            vec![Subject::user("bob"), Subject::group("ops")]
        );
        assert_eq!(s.tags_written, vec!["c1/vm1: GANETI_WEB_MANAGER:power:U:bob"]);
        assert_eq!(s.tag_count, 1);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(cond(&s.conditions, "Ready").0, "True");
        let (_, reason, msg) = cond(&s.conditions, "TagsInSync");
        assert_eq!(reason, "Synced");
        assert!(msg.contains("not in Ganeti: c2/vm9"), "{msg}");

        let mut b2 = b.clone();
        b2.status = Some(s);
        assert_eq!(
            binding_status(&b2, Some(&role), &clusters, now()),
            None,
            "no rewrite"
        );
    }

    #[test]
    fn an_observed_cluster_is_reported_not_failed() {
        let b = binding("x", "user", &[("lab", "vm1")]);
        let role = role_spec();
        let clusters = BTreeMap::from([("lab".to_string(), ClusterState::Observed)]);
        let s = binding_status(&b, Some(&role), &clusters, now()).unwrap();
        let (status, reason, msg) = cond(&s.conditions, "TagsInSync");
        assert_eq!((status, reason), ("True", "ObservedOnly"));
        assert!(
            msg.contains("lab: observed only (managementPolicy: Observe)"),
            "{msg}"
        );
        let (status, reason, msg) = cond(&s.conditions, "Ready");
        assert_eq!((status, reason), ("True", "Ready"));
        assert!(msg.contains("observed only"), "{msg}");
        assert_eq!(s.tag_count, 0);
        // Beside a managed cluster's tags, the observed one is named.
        let mut report = ClusterReport::default();
        report.bindings.insert(
            "x".into(),
            BindingReport {
                tags: BTreeSet::from([("vm2".to_string(), "GANETI_WEB_MANAGER:power:U:bob".to_string())]),
                instances: BTreeSet::from(["vm2".to_string()]),
                ..BindingReport::default()
            },
        );
        let b = binding("x", "user", &[("lab", "vm1"), ("prod", "vm2")]);
        let clusters = BTreeMap::from([
            ("lab".to_string(), ClusterState::Observed),
            ("prod".to_string(), ClusterState::Synced(&report)),
        ]);
        let s = binding_status(&b, Some(&role), &clusters, now()).unwrap();
        let (status, reason, msg) = cond(&s.conditions, "TagsInSync");
        assert_eq!((status, reason), ("True", "Synced"));
        assert!(msg.contains("none written on lab (observed only"), "{msg}");
    }

    #[test]
    fn missing_role_errors_and_unsynced_clusters() {
        let b = binding("x", "nope", &[("c1", "vm1")]);
        let s = binding_status(&b, None, &BTreeMap::new(), now()).unwrap();
        assert_eq!(cond(&s.conditions, "RoleFound").1, "RoleNotFound");
        assert_eq!(cond(&s.conditions, "Ready").0, "False");
        assert_eq!(cond(&s.conditions, "TagsInSync").0, "Unknown");

        let mut report = ClusterReport::default();
        report.bindings.insert(
            "x".into(),
            BindingReport {
                errors: vec!["tag is 140 characters long, Ganeti allows at most 128".into()],
                ..BindingReport::default()
            },
        );
        let clusters = BTreeMap::from([("c1".to_string(), ClusterState::Synced(&report))]);
        let role = role_spec();
        let s = binding_status(&b, Some(&role), &clusters, now()).unwrap();
        let (status, reason, msg) = cond(&s.conditions, "TagsInSync");
        assert_eq!((status, reason), ("False", "TagError"));
        assert!(msg.contains("at most 128"));
        assert_eq!(cond(&s.conditions, "Ready").1, "TagError");

        let clusters = BTreeMap::from([("c1".to_string(), ClusterState::Failing("unreachable"))]);
        let s = binding_status(&b, Some(&role), &clusters, now()).unwrap();
        assert!(cond(&s.conditions, "TagsInSync").2.contains("c1 (unreachable)"));

        let unnarrowed = binding("y", "user", &[]);
        let s = binding_status(&unnarrowed, Some(&role), &BTreeMap::new(), now()).unwrap();
        assert_eq!(cond(&s.conditions, "TagsInSync").1, "NoTags");
        assert_eq!(cond(&s.conditions, "Ready").0, "True");
    }

    #[test]
    fn role_status_counts_bindings_and_watches_the_administrator() {
        let admin = preconfigured_roles().remove(0);
        let b1 = binding("admins", ADMINISTRATOR, &[]);
        let b2 = binding("other", "user", &[]);
        let s = role_status(&admin, &[&b1, &b2], true, now()).unwrap();
        assert_eq!(s.bound_by, vec!["admins"]);
        assert_eq!(s.binding_count, 1);
        assert_eq!(cond(&s.conditions, "Preconfigured").1, "Builtin");
        assert_eq!(cond(&s.conditions, "AdministratorBound").0, "True");

        let s = role_status(&admin, &[], false, now()).unwrap();
        let (status, reason, _) = cond(&s.conditions, "AdministratorBound");
        assert_eq!((status, reason), ("False", "NoAdministratorBinding"));

        let mut tampered = preconfigured_roles().remove(2);
        tampered.spec.description = Some("changed".into());
        let s = role_status(&tampered, &[], false, now()).unwrap();
        assert_eq!(cond(&s.conditions, "Preconfigured").1, "DiffersFromBuiltin");
        assert!(conditions::get(&s.conditions, "AdministratorBound").is_none());

        let mut custom = Role::new("power", role_spec());
        let b3 = binding("p", "power", &[]);
        let s = role_status(&custom, &[&b1, &b3], true, now()).unwrap();
        assert_eq!(s.bound_by, vec!["p"]);
        assert!(s.conditions.is_empty());
        custom.status = Some(s);
        assert_eq!(role_status(&custom, &[&b1, &b3], true, now()), None);
    }
}
