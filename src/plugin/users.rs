//! `kubectl ganeti users`: ganetimgr's "interesting users" for admins. Users inactive for
//! a while and their VMs, VMs whose owner is gone (no profile, no binding, or no owner at
//! all: candidates for adoption), and profiles that own no VM. Built from UserProfiles
//! (`status.lastSeen`, written when the operator authenticates a user), RoleBindings and
//! the GanetiInstances the caller may list (all of them, for an admin).

use super::client::{About, INSTANCES, explain, get};
use super::instance::{GanetiInstance, InstanceList};
use super::list::aligned;
use crate::api::common::SubjectKind;
use crate::api::{RoleBinding, UserProfile};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsersReport {
    /// How long without a request makes a user inactive, in days.
    pub inactive_days: u32,
    pub inactive: Vec<InactiveUser>,
    pub orphaned_vms: Vec<OrphanedVm>,
    pub profiles_without_vms: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InactiveUser {
    pub user: String,
    pub profile: String,
    /// Absent: never seen since the profile was made.
    pub last_seen: Option<Timestamp>,
    /// The GanetiInstances the user owns.
    pub vms: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrphanedVm {
    pub vm: String,
    /// `User:alice`, `Group:team-a`, or empty for a VM without an owner tag.
    pub owner: String,
    pub why: Orphaned,
}

#[derive(Serialize, Debug, PartialEq, Eq, Clone, Copy)]
pub enum Orphaned {
    /// No owner tag: nobody but admins acts on it (adopt it).
    NoOwner,
    /// The owning user has no UserProfile: no mail reaches them.
    NoProfile,
    /// No RoleBinding names the owner (or, for a user, any group of their profiles):
    /// the owner has no rights on it.
    NoBinding,
}

impl Orphaned {
    fn as_str(self) -> &'static str {
        match self {
            Orphaned::NoOwner => "no owner",
            Orphaned::NoProfile => "no profile",
            Orphaned::NoBinding => "no binding",
        }
    }
}

/// The report at `now`. A profile is inactive when its user was last seen more than
/// `inactive_days` ago, or never and the profile is older than that (a profile made
/// yesterday is new, not inactive).
pub fn report(
    profiles: &[UserProfile],
    bindings: &[RoleBinding],
    vms: &[GanetiInstance],
    now: Timestamp,
    inactive_days: u32,
) -> UsersReport {
    let cutoff = now - SignedDuration::from_hours(24 * i64::from(inactive_days));
    let mut owned: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for vm in vms {
        if let Some(owner) = &vm.status.owner {
            owned
                .entry((owner.kind.as_str(), owner.name.as_str()))
                .or_default()
                .push(vm.name().to_owned());
        }
    }
    let vms_of_user = |user: &str| owned.get(&("User", user)).cloned().unwrap_or_default();

    let mut inactive = Vec::new();
    let mut profiles_without_vms = Vec::new();
    for p in profiles {
        let name = p.metadata.name.clone().unwrap_or_default();
        let user = &p.spec.username;
        let last_seen = p.status.as_ref().and_then(|s| s.last_seen.as_ref()).map(|t| t.0);
        let made = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let idle = match last_seen {
            Some(seen) => seen < cutoff,
            None => made.is_some_and(|m| m < cutoff),
        };
        let vms = vms_of_user(user);
        if vms.is_empty() {
            profiles_without_vms.push(name.clone());
        }
        if idle {
            inactive.push(InactiveUser {
                user: user.clone(),
                profile: name,
                last_seen,
                vms,
            });
        }
    }

    let mut bound_users = BTreeSet::new();
    let mut bound_groups = BTreeSet::new();
    for b in bindings {
        for s in &b.spec.subjects {
            match s.kind {
                SubjectKind::User => bound_users.insert(s.name.as_str()),
                SubjectKind::Group => bound_groups.insert(s.name.as_str()),
            };
        }
    }
    // Users with a profile, and those a binding reaches through their profiles' groups:
    // computed once, not scanned again for every VM.
    let profiled: BTreeSet<&str> = profiles.iter().map(|p| p.spec.username.as_str()).collect();
    for p in profiles {
        if p.spec.groups.iter().any(|g| bound_groups.contains(g.as_str())) {
            bound_users.insert(p.spec.username.as_str());
        }
    }
    let mut orphaned_vms = Vec::new();
    for vm in vms {
        let (owner, why) = match &vm.status.owner {
            None => (String::new(), Some(Orphaned::NoOwner)),
            Some(o) => {
                let why = match o.kind.as_str() {
                    "User" if !profiled.contains(o.name.as_str()) => Some(Orphaned::NoProfile),
                    "User" => (!bound_users.contains(o.name.as_str())).then_some(Orphaned::NoBinding),
                    _ => (!bound_groups.contains(o.name.as_str())).then_some(Orphaned::NoBinding),
                };
                (format!("{}:{}", o.kind, o.name), why)
            }
        };
        if let Some(why) = why {
            orphaned_vms.push(OrphanedVm {
                vm: vm.name().to_owned(),
                owner,
                why,
            });
        }
    }
    inactive.sort_by(|a, b| (a.last_seen, &a.user).cmp(&(b.last_seen, &b.user)));
    orphaned_vms.sort_by(|a, b| a.vm.cmp(&b.vm));
    profiles_without_vms.sort();
    UsersReport {
        inactive_days,
        inactive,
        orphaned_vms,
        profiles_without_vms,
    }
}

/// The report as three tables under headings; an empty section says so.
pub fn render(report: &UsersReport, now: Timestamp) -> String {
    let none = |s: &str| {
        if s.is_empty() {
            "<none>".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut out = format!("Users inactive for {} days or more:\n", report.inactive_days);
    if report.inactive.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut rows = vec![["USER", "PROFILE", "LAST SEEN", "VMS"].map(String::from).to_vec()];
        for u in &report.inactive {
            let seen = u.last_seen.map_or("never".to_owned(), |t| {
                format!("{}d ago", now.duration_since(t).as_hours() / 24)
            });
            rows.push(vec![
                u.user.clone(),
                u.profile.clone(),
                seen,
                none(&u.vms.join(",")),
            ]);
        }
        out.push_str(&aligned(rows));
    }
    out.push_str("\nVMs whose owner is gone:\n");
    if report.orphaned_vms.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut rows = vec![["VM", "OWNER", "WHY"].map(String::from).to_vec()];
        for v in &report.orphaned_vms {
            rows.push(vec![v.vm.clone(), none(&v.owner), v.why.as_str().to_owned()]);
        }
        out.push_str(&aligned(rows));
    }
    out.push_str("\nProfiles without VMs:\n");
    if report.profiles_without_vms.is_empty() {
        out.push_str("  none\n");
    } else {
        for p in &report.profiles_without_vms {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

/// Reads profiles, bindings and the VMs, and prints the report (or its JSON).
pub async fn users(client: &kube::Client, inactive_days: u32, json: bool) -> anyhow::Result<()> {
    let profiles = Api::<UserProfile>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("listing UserProfiles: {e}"))?
        .items;
    let bindings = Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("listing RoleBindings: {e}"))?
        .items;
    let vms: InstanceList = match get(client, INSTANCES).await {
        Ok(list) => list,
        Err(error) => return Err(explain(client, error, About::Vms).await),
    };
    let now = Timestamp::now();
    let report = report(&profiles, &bindings, &vms.items, now, inactive_days);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, now));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::binding::RoleBindingSpec;
    use crate::api::common::Subject;
    use crate::api::profile::UserProfileStatus;
    use crate::plugin::instance::Owner;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn profile(name: &str, user: &str, made: &str, seen: Option<&str>, groups: &[&str]) -> UserProfile {
        let mut p = UserProfile::for_tests(name, user, groups);
        p.metadata.creation_timestamp = Some(Time(at(made)));
        p.status = seen.map(|s| UserProfileStatus {
            last_seen: Some(Time(at(s))),
            ..Default::default()
        });
        p
    }

    fn binding(name: &str, subjects: Vec<Subject>) -> RoleBinding {
        RoleBinding::new(
            name,
            RoleBindingSpec {
                role_ref: "user".into(),
                subjects,
                clusters: vec![],
                instances: vec![],
            },
        )
    }

    fn vm(name: &str, owner: Option<(&str, &str)>) -> GanetiInstance {
        let mut vm = GanetiInstance::default();
        vm.metadata.name = Some(name.into());
        vm.status.owner = owner.map(|(kind, name)| Owner {
            kind: kind.into(),
            name: name.into(),
        });
        vm
    }

    #[test]
    fn inactive_users_orphaned_vms_and_idle_profiles() {
        let now = at("2026-11-30T00:00:00Z");
        let profiles = vec![
            profile(
                "alice",
                "alice",
                "2026-01-01T00:00:00Z",
                Some("2026-11-29T00:00:00Z"),
                &[],
            ),
            profile(
                "bob",
                "bob",
                "2026-01-01T00:00:00Z",
                Some("2026-06-01T00:00:00Z"),
                &[],
            ),
            profile("carol", "carol", "2026-01-01T00:00:00Z", None, &["team-c"]),
            // Made last week, never seen: new, not inactive.
            profile("dave", "dave", "2026-11-23T00:00:00Z", None, &[]),
        ];
        let bindings = vec![
            binding("users", vec![Subject::user("alice"), Subject::user("bob")]),
            binding("team-c", vec![Subject::group("team-c")]),
        ];
        let vms = vec![
            vm("c1.alice-1", Some(("User", "alice"))),
            vm("c1.bob-1", Some(("User", "bob"))),
            vm("c1.bob-2", Some(("User", "bob"))),
            // carol is bound through her profile's group.
            vm("c1.carol-1", Some(("User", "carol"))),
            vm("c1.erin-1", Some(("User", "erin"))),
            vm("c1.team-x", Some(("Group", "team-x"))),
            vm("c1.team-c", Some(("Group", "team-c"))),
            vm("c1.legacy", None),
        ];
        let r = report(&profiles, &bindings, &vms, now, 90);
        let inactive: Vec<(&str, &[String])> = r
            .inactive
            .iter()
            .map(|u| (u.user.as_str(), u.vms.as_slice()))
            .collect();
        // Never seen sorts first.
        assert_eq!(
            inactive,
            vec![
                ("carol", &["c1.carol-1".to_string()][..]),
                ("bob", &["c1.bob-1".to_string(), "c1.bob-2".to_string()][..]),
            ]
        );
        let orphaned: Vec<(&str, &str, Orphaned)> = r
            .orphaned_vms
            .iter()
            .map(|v| (v.vm.as_str(), v.owner.as_str(), v.why))
            .collect();
        assert_eq!(
            orphaned,
            vec![
                ("c1.erin-1", "User:erin", Orphaned::NoProfile),
                ("c1.legacy", "", Orphaned::NoOwner),
                ("c1.team-x", "Group:team-x", Orphaned::NoBinding),
            ]
        );
        assert_eq!(r.profiles_without_vms, vec!["dave"]);
        // alice loses her binding: her VM has an owner with no rights.
        let r = report(&profiles, &bindings[1..], &vms, now, 90);
        assert!(
            r.orphaned_vms
                .iter()
                .any(|v| v.vm == "c1.alice-1" && v.why == Orphaned::NoBinding)
        );
        // A shorter threshold: alice (seen yesterday) is still active.
        let r = report(&profiles, &bindings, &vms, now, 1);
        assert!(!r.inactive.iter().any(|u| u.user == "alice"));
        assert!(r.inactive.iter().any(|u| u.user == "dave"));
        let text = render(&r, now);
        assert!(text.contains("Users inactive for 1 days or more:"), "{text}");
        assert!(text.contains("never"), "{text}");
        assert!(text.contains("182d ago"), "{text}");
    }
}
