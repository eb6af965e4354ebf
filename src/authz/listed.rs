//! What bindings that *list* an instance grant on it, per subject: the rights the
//! tag-sync controller writes into Ganeti as Ganeti Web Manager tags.
//!
//! Only bindings that name the instance (in the binding's `instances`, or in their role's
//! `Instances` scope) write tags. A binding reaching whole clusters, every VM or one's own
//! VMs would put a tag for each of its subjects on every VM it reaches; those grants stay
//! in the engine, which other tools cannot see anyway for cluster-wide rights.
//!
//! Per (subject, instance), judged as the engine judges a principal that is only that
//! subject: allowed = what the subject's listing bindings allow where they reach it;
//! forbidden = what any binding naming the subject forbids where it reaches it (so a tag
//! never gives another tool what a role forbids that subject); the admin chain (cluster
//! admin → VM admin → every VM right) as in [`AuthzIndex::decide`]. Tags never count:
//! the operator's own tags would otherwise keep themselves alive after their binding is
//! gone. A user's groups are unknown here, so a group's forbidden rights do not cut a
//! user's tag (and vice versa); the engine still applies them to the principal.

use super::BindingId;
use super::index::{AuthzIndex, CL_ADMIN, Target, VM_ADMIN, vm_bit};
use crate::api::common::{Subject, SubjectKind};
use crate::api::role::{ScopeKind, VmRight};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One subject's rights on one instance, from the bindings that list that instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGrant {
    /// The instance (Ganeti name), on the cluster asked about.
    pub instance: Arc<str>,
    pub subject: Subject,
    /// Bit `VmRight as u32` set for each right held.
    rights: u32,
    /// The bindings that list the instance for this subject and reach it.
    pub bindings: Vec<BindingId>,
}

impl ListedGrant {
    /// Whether the subject holds `right` on the instance.
    pub fn holds(&self, right: VmRight) -> bool {
        self.rights & vm_bit(right) != 0
    }
}

impl AuthzIndex {
    /// Every (instance of `cluster`, subject) that some binding lists, with the rights it
    /// holds there; sorted by instance name, then subject. Pairs holding no right are kept
    /// (with their bindings), so a caller can tell "listed but forbidden" from "not listed".
    pub fn listed_grants(&self, cluster: &str) -> Vec<ListedGrant> {
        let Some(entry) = self.clusters.get(cluster) else {
            return Vec::new();
        };
        let cid = entry.id;
        let mut pairs: BTreeMap<(u32, &Subject), Vec<BindingId>> = BTreeMap::new();
        for (id, b) in self.bindings.iter().enumerate() {
            let role = &self.roles[b.role as usize];
            let from_scope: &[u32] = if role.scope == ScopeKind::Instances {
                &role.scope_instances
            } else {
                &[]
            };
            for &iid in b.instances.iter().chain(from_scope) {
                if self.cluster_of(iid) != cid {
                    continue;
                }
                for s in &b.spec.subjects {
                    if !self.vm_reach(b, role, &self.subject_target(s, cid, iid)) {
                        continue;
                    }
                    let list = pairs.entry((iid, s)).or_default();
                    if !list.contains(&BindingId(id as u32)) {
                        list.push(BindingId(id as u32));
                    }
                }
            }
        }
        let mut out: Vec<ListedGrant> = pairs
            .into_iter()
            .map(|((iid, subject), bindings)| ListedGrant {
                instance: self.facts(iid).name.clone(),
                subject: subject.clone(),
                rights: self.subject_rights(subject, cid, iid, &bindings),
                bindings,
            })
            .collect();
        out.sort_by(|a, b| (&a.instance, &a.subject).cmp(&(&b.instance, &b.subject)));
        out
    }

    fn subject_target(&self, s: &Subject, cluster: u32, instance: u32) -> Target<'_> {
        let facts = self.facts(instance);
        Target {
            cluster: Some(cluster),
            instance: Some(instance),
            facts: Some(facts),
            owned: facts.owners.iter().any(|(o, _)| o == s),
        }
    }

    /// The rights `s` holds on the instance through `listing` (allowed) and all of its
    /// bindings (forbidden).
    fn subject_rights(&self, s: &Subject, cluster: u32, instance: u32, listing: &[BindingId]) -> u32 {
        let map = match s.kind {
            SubjectKind::User => &self.by_user,
            SubjectKind::Group => &self.by_group,
        };
        let t = self.subject_target(s, cluster, instance);
        let (mut allow, mut forbid, mut cl_admin, mut cl_admin_forbid) = (0u32, 0u32, false, false);
        for &id in map.get(s.name.as_str()).map(Vec::as_slice).unwrap_or_default() {
            let b = &self.bindings[id as usize];
            let role = &self.roles[b.role as usize];
            if self.vm_reach(b, role, &t) {
                forbid |= role.vm.forbid;
                if listing.contains(&BindingId(id)) {
                    allow |= role.vm.allow;
                    cl_admin |= role.cl.allow & CL_ADMIN != 0;
                }
            }
            if role.cl.forbid & CL_ADMIN != 0 && self.cluster_reach(b, role, &t) {
                cl_admin_forbid = true;
            }
        }
        let admin = (allow & VM_ADMIN != 0 || (cl_admin && !cl_admin_forbid)) && forbid & VM_ADMIN == 0;
        let all = VmRight::ALL.iter().fold(0, |m, r| m | vm_bit(*r));
        (allow | if admin { all } else { 0 }) & !forbid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::binding::RoleBindingSpec;
    use crate::api::common::InstanceRef;
    use crate::api::role::{ClusterRight, ClusterRights, Permission, RoleSpec, Scope, VmRights};
    use crate::authz::{ADMINISTRATOR, USER};

    const P: &str = crate::tags::DEFAULT_PREFIX;

    fn role(scope: ScopeKind, allow: &[VmRight], forbid: &[VmRight]) -> RoleSpec {
        let mut vms = VmRights::default();
        for r in allow {
            vms.set(*r, Some(Permission::Allowed));
        }
        for r in forbid {
            vms.set(*r, Some(Permission::Forbidden));
        }
        RoleSpec {
            description: None,
            vms: Some(vms),
            clusters: None,
            system: None,
            scope: Scope {
                kind: scope,
                ..Scope::default()
            },
        }
    }

    fn binding(role: &str, subjects: Vec<Subject>, instances: &[(&str, &str)]) -> RoleBindingSpec {
        RoleBindingSpec {
            role_ref: role.into(),
            subjects,
            clusters: vec![],
            instances: instances
                .iter()
                .map(|(c, n)| InstanceRef {
                    cluster: c.to_string(),
                    name: n.to_string(),
                })
                .collect(),
        }
    }

    const POWER: &[VmRight] = &[
        VmRight::View,
        VmRight::Start,
        VmRight::Shutdown,
        VmRight::Reboot,
        VmRight::Console,
    ];

    fn held(g: &ListedGrant) -> Vec<VmRight> {
        VmRight::ALL.iter().copied().filter(|r| g.holds(*r)).collect()
    }

    #[test]
    fn only_listing_bindings_grant_and_any_binding_forbids() {
        let ix = AuthzIndex::builder()
            .role("power", &role(ScopeKind::All, POWER, &[]))
            .role("no-reboot", &role(ScopeKind::All, &[], &[VmRight::Reboot]))
            .binding(
                "bob-power",
                &binding("power", vec![Subject::user("bob")], &[("c1", "vm1")]),
            )
            .binding(
                "bob-everywhere",
                &binding("power", vec![Subject::user("carol")], &[]),
            )
            .binding(
                "carol-no-reboot",
                &binding("no-reboot", vec![Subject::user("carol")], &[]),
            )
            .binding(
                "carol-power",
                &binding("power", vec![Subject::user("carol")], &[("c1", "vm1")]),
            )
            .binding(
                "elsewhere",
                &binding("power", vec![Subject::user("dave")], &[("c2", "vm1")]),
            )
            .instance("c1", "vm1", &[], P)
            .build();
        let grants = ix.listed_grants("c1");
        assert_eq!(grants.len(), 2, "{grants:?}");
        assert_eq!(grants[0].subject, Subject::user("bob"));
        assert_eq!(held(&grants[0]), POWER);
        assert_eq!(ix.binding_name(grants[0].bindings[0]), "bob-power");
        assert_eq!(grants[1].subject, Subject::user("carol"));
        assert!(
            !grants[1].holds(VmRight::Reboot),
            "forbidden by an unlisted binding"
        );
        assert!(grants[1].holds(VmRight::Start));
        assert!(ix.listed_grants("c3").is_empty());
    }

    #[test]
    fn role_scope_instances_count_as_listed_and_own_needs_ownership() {
        let mut scoped = role(ScopeKind::Instances, POWER, &[]);
        scoped.scope.instances = vec![InstanceRef {
            cluster: "c1".into(),
            name: "vm2".into(),
        }];
        let ix = AuthzIndex::builder()
            .role("scoped", &scoped)
            .binding("team", &binding("scoped", vec![Subject::group("team")], &[]))
            .binding(
                "alice-own",
                &binding(
                    USER,
                    vec![Subject::user("alice")],
                    &[("c1", "vm1"), ("c1", "vm2")],
                ),
            )
            .instance("c1", "vm1", &["ganetimgr:user:alice".to_string()], P)
            .instance("c1", "vm2", &[], P)
            .build();
        let grants = ix.listed_grants("c1");
        let pairs: Vec<(&str, &Subject)> = grants.iter().map(|g| (&*g.instance, &g.subject)).collect();
        assert_eq!(
            pairs,
            vec![("vm1", &Subject::user("alice")), ("vm2", &Subject::group("team"))],
            "alice's Own role reaches only her VM"
        );
        assert!(grants[0].holds(VmRight::Destroy));
        assert_eq!(held(&grants[1]), POWER);
    }

    #[test]
    fn the_admin_chain_and_its_cuts() {
        let rights = |r: ClusterRight, p: Permission| {
            let mut c = ClusterRights::default();
            c.set(r, Some(p));
            RoleSpec {
                clusters: Some(c),
                vms: None,
                ..role(ScopeKind::All, &[], &[])
            }
        };
        let ix = AuthzIndex::builder()
            .role("cl-admin", &rights(ClusterRight::Admin, Permission::Allowed))
            .role("no-cl-admin", &rights(ClusterRight::Admin, Permission::Forbidden))
            .role(
                "no-vm-admin",
                &role(ScopeKind::All, &[VmRight::Start], &[VmRight::Admin]),
            )
            .binding(
                "a",
                &binding(ADMINISTRATOR, vec![Subject::user("a")], &[("c1", "vm")]),
            )
            .binding(
                "b",
                &binding(ADMINISTRATOR, vec![Subject::user("b")], &[("c1", "vm")]),
            )
            .binding("b-cut", &binding("no-vm-admin", vec![Subject::user("b")], &[]))
            .binding(
                "c",
                &binding("cl-admin", vec![Subject::user("c")], &[("c1", "vm")]),
            )
            .binding("c-cut", &binding("no-cl-admin", vec![Subject::user("c")], &[]))
            .binding(
                "d",
                &binding("cl-admin", vec![Subject::user("d")], &[("c1", "vm")]),
            )
            .instance("c1", "vm", &[], P)
            .build();
        let grants = ix.listed_grants("c1");
        assert_eq!(held(&grants[0]), VmRight::ALL, "administrator: everything");
        assert_eq!(
            held(&grants[1]),
            Vec::<VmRight>::new(),
            "VM admin cut; start is not listed"
        );
        assert_eq!(held(&grants[2]), Vec::<VmRight>::new(), "cluster admin cut");
        assert_eq!(held(&grants[3]), VmRight::ALL, "cluster admin implies VM admin");
    }
}
