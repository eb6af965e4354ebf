//! Who holds each system right that admission needs, in a shape CEL can read.
//!
//! The ValidatingAdmissionPolicies of `manifests/admission.yaml` decide who may decide
//! applications, edit quotas, roles and others' profiles, and send notifications. CEL
//! cannot evaluate Roles, so the operator publishes the engine's answer as the
//! policies' parameter (the ConfigMap [`CONFIG_MAP`]): for every subject a RoleBinding
//! names and every user with a profile, its own verdict on each right. A requester
//! holds a right when one of their names (username, groups) is allowed and none is
//! forbidden: the engine's rule that forbidden beats allowed across all a subject holds.
//! For system rights (which ignore scopes) this decomposition is exact.
//!
//! A user's groups mean the same everywhere: those Kubernetes authenticates plus those
//! their `UserProfile` lists (set by holders of `system.users`). A user's verdict is
//! therefore decided with their profile's groups, and the memberships are published
//! too, for the policy that lets a member apply on a group's behalf.
//!
//! Bootstrapping: until an un-narrowed binding to `administrator` exists, the admin
//! groups of the installation hold every system right (unless a role forbids it);
//! `adminGroupsActive` tells the policies. Pure.

use super::{AuthzIndex, Principal, Reason, Request, has_administrator_binding};
use crate::api::common::SubjectKind;
use crate::api::role::SystemRight;
use crate::api::{Role, RoleBinding};
use std::collections::{BTreeMap, BTreeSet};

/// Name of the ConfigMap (in the operator's namespace) the admission policies read.
pub const CONFIG_MAP: &str = "ganeti-system-rights";

/// The system rights that admission enforces (the others are checked by the operator).
pub const ADMISSION_RIGHTS: &[SystemRight] = &[
    SystemRight::Applications,
    SystemRight::Notifications,
    SystemRight::Quotas,
    SystemRight::Roles,
    SystemRight::Users,
];

/// One right's holders, by each subject's own verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    pub allowed_users: BTreeSet<String>,
    pub allowed_groups: BTreeSet<String>,
    pub forbidden_users: BTreeSet<String>,
    pub forbidden_groups: BTreeSet<String>,
}

/// Everything the policies read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub rights: BTreeMap<SystemRight, Holders>,
    /// No un-narrowed `administrator` binding yet: the admin groups still count.
    pub admin_groups_active: bool,
    /// (group, user) for every group a profile lists.
    pub memberships: BTreeSet<(String, String)>,
}

/// A user's profile groups, as the engine and the policies count them.
pub struct ProfileGroups<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

/// Decides every admission right for every subject that a binding or a profile names.
pub fn publish<'a>(
    roles: impl IntoIterator<Item = &'a Role>,
    bindings: &[&'a RoleBinding],
    profiles: &[ProfileGroups<'_>],
) -> Published {
    let index = AuthzIndex::builder()
        .roles(roles)
        .bindings(bindings.iter().copied())
        .build();
    let profile_of: BTreeMap<&str, &[String]> = profiles.iter().map(|p| (p.user, p.groups)).collect();
    let mut users: BTreeSet<&str> = profiles.iter().map(|p| p.user).collect();
    let mut groups: BTreeSet<&str> = BTreeSet::new();
    for s in bindings.iter().flat_map(|b| b.spec.subjects.iter()) {
        match s.kind {
            SubjectKind::User => users.insert(&s.name),
            SubjectKind::Group => groups.insert(&s.name),
        };
    }
    let mut out = Published {
        admin_groups_active: !has_administrator_binding(bindings.iter().copied()),
        ..Default::default()
    };
    for p in profiles {
        for g in p.groups {
            out.memberships.insert((g.clone(), p.user.to_owned()));
        }
    }
    for &right in ADMISSION_RIGHTS {
        let holders = out.rights.entry(right).or_default();
        let request = Request::System(right);
        for &user in &users {
            let own = profile_of.get(user).copied().unwrap_or_default();
            let decision = index.decide(&Principal::new(user, own), &request);
            match (decision.allowed, decision.reason) {
                (true, _) => holders.allowed_users.insert(user.to_owned()),
                (false, Reason::Forbidden { .. }) => holders.forbidden_users.insert(user.to_owned()),
                _ => false,
            };
        }
        for &group in &groups {
            // A username is never empty, so "" stands for "no user" when asking about
            // a group alone.
            let one = [group.to_owned()];
            let decision = index.decide(&Principal::new("", &one), &request);
            match (decision.allowed, decision.reason) {
                (true, _) => holders.allowed_groups.insert(group.to_owned()),
                (false, Reason::Forbidden { .. }) => holders.forbidden_groups.insert(group.to_owned()),
                _ => false,
            };
        }
    }
    out
}

/// A name CEL can match line by line: one without the separators.
fn representable(name: &str) -> bool {
    !name.contains(['\n', '\t'])
}

/// The ConfigMap's data: per right `<right>.allowedUsers` (and `allowedGroups`,
/// `forbiddenUsers`, `forbiddenGroups`), one name per line; `adminGroupsActive`;
/// `profileMembers`, one `group<TAB>user` per line. Names with a newline or tab
/// cannot be written: an allowed one is left out (fails closed), a forbidden one
/// makes the whole right held by nobody but `system:masters` (`<right>.unrepresentable`).
pub fn config_map_data(p: &Published) -> BTreeMap<String, String> {
    let join = |set: &BTreeSet<String>| {
        set.iter()
            .filter(|n| representable(n))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut data = BTreeMap::new();
    for (right, h) in &p.rights {
        data.insert(format!("{right}.allowedUsers"), join(&h.allowed_users));
        data.insert(format!("{right}.allowedGroups"), join(&h.allowed_groups));
        data.insert(format!("{right}.forbiddenUsers"), join(&h.forbidden_users));
        data.insert(format!("{right}.forbiddenGroups"), join(&h.forbidden_groups));
        let lost = h
            .forbidden_users
            .iter()
            .chain(&h.forbidden_groups)
            .any(|n| !representable(n));
        data.insert(format!("{right}.unrepresentable"), lost.to_string());
    }
    data.insert("adminGroupsActive".into(), p.admin_groups_active.to_string());
    let members: Vec<String> = p
        .memberships
        .iter()
        .filter(|(g, u)| representable(g) && representable(u))
        .map(|(g, u)| format!("{g}\t{u}"))
        .collect();
    data.insert("profileMembers".into(), members.join("\n"));
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RoleBindingSpec;
    use crate::api::common::Subject;
    use crate::api::role::{Permission, RoleSpec, SystemRights};
    use crate::authz::{ADMINISTRATOR, preconfigured_roles};

    fn role(name: &str, rights: &[(SystemRight, Permission)]) -> Role {
        let mut system = SystemRights::default();
        for (r, p) in rights {
            system.set(*r, Some(*p));
        }
        Role::new(
            name,
            RoleSpec {
                description: None,
                vms: None,
                clusters: None,
                system: Some(system),
                scope: Default::default(),
            },
        )
    }

    fn binding(name: &str, role: &str, subjects: Vec<Subject>, clusters: &[&str]) -> RoleBinding {
        RoleBinding::new(
            name,
            RoleBindingSpec {
                role_ref: role.into(),
                subjects,
                clusters: clusters.iter().map(|c| c.to_string()).collect(),
                instances: vec![],
            },
        )
    }

    use Permission::{Allowed, Forbidden};
    use SystemRight::{Applications, Notifications, Quotas};

    #[test]
    fn each_subject_by_its_own_verdict_per_right() {
        let roles = vec![
            role("mailer", &[(Notifications, Allowed)]),
            role("no-mail", &[(Notifications, Forbidden)]),
            role("quota-keeper", &[(Quotas, Allowed)]),
        ];
        let bindings = [
            binding(
                "b1",
                "mailer",
                vec![Subject::user("bob"), Subject::group("helpdesk")],
                &[],
            ),
            binding("b2", "no-mail", vec![Subject::group("interns")], &[]),
            // Narrowed bindings confer no system right...
            binding("b3", "mailer", vec![Subject::user("carol")], &["c1"]),
            // ...but their forbidden ones still count.
            binding("b4", "no-mail", vec![Subject::user("dave")], &["c1"]),
            binding("b5", "quota-keeper", vec![Subject::user("quinn")], &[]),
        ];
        let refs: Vec<&RoleBinding> = bindings.iter().collect();
        let p = publish(&roles, &refs, &[]);
        let n = &p.rights[&Notifications];
        assert_eq!(n.allowed_users, BTreeSet::from(["bob".into()]));
        assert_eq!(n.allowed_groups, BTreeSet::from(["helpdesk".into()]));
        assert_eq!(n.forbidden_users, BTreeSet::from(["dave".into()]));
        assert_eq!(n.forbidden_groups, BTreeSet::from(["interns".into()]));
        // quinn holds quotas and nothing else.
        assert_eq!(p.rights[&Quotas].allowed_users, BTreeSet::from(["quinn".into()]));
        assert!(!p.rights[&Applications].allowed_users.contains("quinn"));
        assert!(p.admin_groups_active, "no administrator binding yet");
        let data = config_map_data(&p);
        assert_eq!(data["notifications.allowedUsers"], "bob");
        assert_eq!(data["quotas.allowedUsers"], "quinn");
        assert_eq!(data["adminGroupsActive"], "true");
    }

    #[test]
    fn profile_groups_count_like_authenticated_ones() {
        let mut roles = preconfigured_roles();
        roles.push(role("deciders", &[(Applications, Allowed)]));
        roles.push(role("no-deciding", &[(Applications, Forbidden)]));
        let bindings = [
            binding("b1", "deciders", vec![Subject::group("reviewers")], &[]),
            binding("b2", "no-deciding", vec![Subject::group("probation")], &[]),
            binding("root", ADMINISTRATOR, vec![Subject::user("root")], &[]),
        ];
        let refs: Vec<&RoleBinding> = bindings.iter().collect();
        let erin = ["reviewers".to_string()];
        let frank = ["reviewers".to_string(), "probation".to_string()];
        let profiles = [
            ProfileGroups {
                user: "erin",
                groups: &erin,
            },
            ProfileGroups {
                user: "frank",
                groups: &frank,
            },
        ];
        let p = publish(&roles, &refs, &profiles);
        let a = &p.rights[&Applications];
        assert!(a.allowed_users.contains("erin"), "{a:?}");
        assert!(
            a.forbidden_users.contains("frank"),
            "forbidden through a profile group wins: {a:?}"
        );
        assert!(a.allowed_users.contains("root"));
        assert!(
            !p.admin_groups_active,
            "an administrator binding ends the bootstrap"
        );
        let data = config_map_data(&p);
        assert_eq!(data["adminGroupsActive"], "false");
        assert_eq!(
            data["profileMembers"],
            "probation\tfrank\nreviewers\terin\nreviewers\tfrank"
        );
    }

    #[test]
    fn names_that_cannot_be_written_fail_closed() {
        let roles = vec![role("no-mail", &[(Notifications, Forbidden)])];
        let bindings = [binding("b", "no-mail", vec![Subject::user("odd\nname")], &[])];
        let refs: Vec<&RoleBinding> = bindings.iter().collect();
        let data = config_map_data(&publish(&roles, &refs, &[]));
        assert_eq!(data["notifications.unrepresentable"], "true");
        assert_eq!(data["notifications.forbiddenUsers"], "");
        assert_eq!(data["quotas.unrepresentable"], "false");
    }
}
