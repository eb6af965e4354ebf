//! Who holds the `notifications` system right, in the shape admission can read: the
//! ValidatingAdmissionPolicy `ganeti.dev-notification-senders` (manifests/admission.yaml)
//! takes a ConfigMap as its parameter, and CEL cannot evaluate Roles, so the operator
//! writes the answer of the authorization engine for every subject that a RoleBinding
//! names. Pure.
//!
//! A requester may send when one of their subjects (username, groups) is allowed and
//! none is forbidden: the engine's rule that forbidden beats allowed across everything
//! a subject holds.

use crate::api::common::SubjectKind;
use crate::api::role::SystemRight;
use crate::api::{Role, RoleBinding};
use crate::authz::{AuthzIndex, Principal, Reason, Request};
use std::collections::{BTreeMap, BTreeSet};

/// Name of the ConfigMap (in the operator's namespace) the policy reads.
pub const CONFIG_MAP: &str = "notification-senders";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Senders {
    pub allowed_users: BTreeSet<String>,
    pub allowed_groups: BTreeSet<String>,
    pub forbidden_users: BTreeSet<String>,
    pub forbidden_groups: BTreeSet<String>,
}

/// Each subject's own verdict on `system.notifications`.
pub fn senders(roles: &[Role], bindings: &[RoleBinding]) -> Senders {
    let ix = AuthzIndex::builder().roles(roles).bindings(bindings).build();
    let subjects: BTreeSet<_> = bindings.iter().flat_map(|b| b.spec.subjects.iter()).collect();
    let request = Request::System(SystemRight::Notifications);
    let mut out = Senders::default();
    for s in subjects {
        let group = [s.name.clone()];
        // A username is never empty, so "" stands for "no user" when asking about a
        // group alone.
        let principal = match s.kind {
            SubjectKind::User => Principal::new(&s.name, &[]),
            SubjectKind::Group => Principal::new("", &group),
        };
        let decision = ix.decide(&principal, &request);
        let set = match (s.kind, decision.allowed, decision.reason) {
            (SubjectKind::User, true, _) => &mut out.allowed_users,
            (SubjectKind::Group, true, _) => &mut out.allowed_groups,
            (SubjectKind::User, false, Reason::Forbidden { .. }) => &mut out.forbidden_users,
            (SubjectKind::Group, false, Reason::Forbidden { .. }) => &mut out.forbidden_groups,
            _ => continue,
        };
        set.insert(s.name.clone());
    }
    out
}

/// The ConfigMap's data: one name per line (names never contain a newline).
pub fn config_map_data(s: &Senders) -> BTreeMap<String, String> {
    let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join("\n");
    BTreeMap::from([
        ("allowedUsers".to_string(), join(&s.allowed_users)),
        ("allowedGroups".to_string(), join(&s.allowed_groups)),
        ("forbiddenUsers".to_string(), join(&s.forbidden_users)),
        ("forbiddenGroups".to_string(), join(&s.forbidden_groups)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RoleBindingSpec;
    use crate::api::common::Subject;
    use crate::api::role::{Permission, RoleSpec, SystemRights};

    fn role(name: &str, notifications: Permission) -> Role {
        let mut system = SystemRights::default();
        system.set(SystemRight::Notifications, Some(notifications));
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

    #[test]
    fn allowed_forbidden_and_narrowed_bindings() {
        let roles = vec![
            role("mailer", Permission::Allowed),
            role("no-mail", Permission::Forbidden),
        ];
        let bindings = vec![
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
            binding("b5", "administrator", vec![Subject::user("root-ish")], &[]),
            binding("b6", "user", vec![Subject::group("everyone")], &[]),
        ];
        let s = senders(&roles, &bindings);
        assert_eq!(s.allowed_users, BTreeSet::from(["bob".into(), "root-ish".into()]));
        assert_eq!(s.allowed_groups, BTreeSet::from(["helpdesk".into()]));
        assert_eq!(s.forbidden_users, BTreeSet::from(["dave".into()]));
        assert_eq!(s.forbidden_groups, BTreeSet::from(["interns".into()]));
        let data = config_map_data(&s);
        assert_eq!(data["allowedUsers"], "bob\nroot-ish");
    }
}
