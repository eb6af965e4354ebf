//! Escalation check for admission: a requester may create or change a Role or RoleBinding
//! only if they already hold every right it grants, over at least the objects it reaches
//! (the administrator excepted).
//!
//! Conservative on purpose: the requester's reach is under-estimated (an `Own`-scoped
//! binding narrowed to clusters counts as reaching nothing; rights from tags never count)
//! and the granted reach over-estimated (an `Own`-scoped grant narrowed to clusters counts
//! as those whole clusters). A right the requester has forbidden anywhere, or holds only
//! through an `admin` they have forbidden anywhere, is missing. Forbidden settings in the
//! granted role take nothing away, so they need nothing.

use super::index::{AuthzIndex, Masks, cl_bit, vm_bit};
use super::preconfigured::ADMINISTRATOR;
use super::{Principal, Right};
use crate::api::binding::{RoleBinding, RoleBindingSpec};
use crate::api::common::InstanceRef;
use crate::api::role::{ClusterRight, Permission, RoleSpec, Scope, ScopeKind, VmRight};
use std::collections::BTreeSet;

/// Whether some binding makes someone the administrator (bound to `administrator`, with a
/// subject, not narrowed). The operator raises a condition when none does.
pub fn has_administrator_binding<'a>(bindings: impl IntoIterator<Item = &'a RoleBinding>) -> bool {
    bindings.into_iter().any(|b| {
        b.spec.role_ref == ADMINISTRATOR
            && !b.spec.subjects.is_empty()
            && b.spec.clusters.is_empty()
            && b.spec.instances.is_empty()
    })
}

/// The objects some grants reach.
#[derive(Debug, Default)]
struct Reach<'a> {
    all: bool,
    own: bool,
    clusters: BTreeSet<&'a str>,
    instances: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Reach<'a> {
    fn merge(&mut self, other: Reach<'a>) {
        self.all |= other.all;
        self.own |= other.own;
        self.clusters.extend(other.clusters);
        self.instances.extend(other.instances);
    }

    /// Whether `self` (what is held) includes `target` (what is granted).
    fn covers(&self, target: &Reach<'_>) -> bool {
        self.all
            || (!target.all
                && (!target.own || self.own)
                && target.clusters.iter().all(|c| self.clusters.contains(c))
                && target
                    .instances
                    .iter()
                    .all(|i| self.clusters.contains(i.0) || self.instances.contains(i)))
    }
}

fn pairs(list: &[InstanceRef]) -> impl Iterator<Item = (&str, &str)> {
    list.iter().map(|i| (i.cluster.as_str(), i.name.as_str()))
}

/// VM reach of a scope and a narrowing. `own_narrowed_bound`: an `Own` scope narrowed to
/// some clusters/instances counts as all of them (over-estimate) or as nothing.
fn vm_reach<'a>(
    scope: &'a Scope,
    clusters: &'a [String],
    instances: &'a [InstanceRef],
    own_narrowed_bound: bool,
) -> Reach<'a> {
    let mut r = Reach::default();
    let narrowed = !clusters.is_empty() || !instances.is_empty();
    let bc: BTreeSet<&str> = clusters.iter().map(String::as_str).collect();
    let bi: BTreeSet<(&str, &str)> = pairs(instances).collect();
    match (scope.kind, narrowed) {
        (ScopeKind::All, false) => r.all = true,
        (ScopeKind::Own, false) => r.own = true,
        (ScopeKind::Clusters, false) => r.clusters = scope.clusters.iter().map(String::as_str).collect(),
        (ScopeKind::Instances, false) => r.instances = pairs(&scope.instances).collect(),
        (ScopeKind::All, true) => (r.clusters, r.instances) = (bc, bi),
        (ScopeKind::Own, true) if own_narrowed_bound => (r.clusters, r.instances) = (bc, bi),
        (ScopeKind::Own, true) => {}
        (ScopeKind::Clusters, true) => {
            let listed: BTreeSet<&str> = scope.clusters.iter().map(String::as_str).collect();
            r.clusters = bc.intersection(&listed).copied().collect();
            r.instances = bi.into_iter().filter(|i| listed.contains(i.0)).collect();
        }
        (ScopeKind::Instances, true) => {
            r.instances = pairs(&scope.instances)
                .filter(|i| bi.contains(i) || bc.contains(i.0))
                .collect();
        }
    }
    r
}

/// Cluster reach of a scope and a narrowing (exact: no ownership involved).
fn cluster_reach<'a>(scope: &'a Scope, clusters: &'a [String], instances: &'a [InstanceRef]) -> Reach<'a> {
    let role: Option<BTreeSet<&str>> = match scope.kind {
        ScopeKind::All | ScopeKind::Own => None,
        ScopeKind::Clusters => Some(scope.clusters.iter().map(String::as_str).collect()),
        ScopeKind::Instances => Some(scope.instances.iter().map(|i| i.cluster.as_str()).collect()),
    };
    let narrowed = !clusters.is_empty() || !instances.is_empty();
    let narrowing: Option<BTreeSet<&str>> = narrowed.then(|| {
        clusters
            .iter()
            .map(String::as_str)
            .chain(instances.iter().map(|i| i.cluster.as_str()))
            .collect()
    });
    match (role, narrowing) {
        (None, None) => Reach {
            all: true,
            ..Reach::default()
        },
        (Some(set), None) | (None, Some(set)) => Reach {
            clusters: set,
            ..Reach::default()
        },
        (Some(a), Some(b)) => Reach {
            clusters: a.intersection(&b).copied().collect(),
            ..Reach::default()
        },
    }
}

impl AuthzIndex {
    /// Whether `p` may create or change a role with `role`'s rights, bound with this
    /// narrowing (pass empty lists to check a Role itself). `Err` lists the rights missing.
    pub fn may_grant(
        &self,
        p: &Principal<'_>,
        role: &RoleSpec,
        clusters: &[String],
        instances: &[InstanceRef],
    ) -> Result<(), Vec<Right>> {
        if self.is_administrator(p) {
            return Ok(());
        }
        let mut mine: Vec<u32> = self.bindings_of(p).collect();
        mine.sort_unstable();
        mine.dedup();
        let held_roles = || {
            mine.iter().map(|id| {
                (
                    &self.bindings[*id as usize],
                    &self.roles[self.bindings[*id as usize].role as usize],
                )
            })
        };
        let vm_forbidden = held_roles().fold(0, |m, (_, r)| m | r.vm.forbid);
        let cl_forbidden = held_roles().fold(0, |m, (_, r)| m | r.cl.forbid);
        let vm_admin_ok = vm_forbidden & vm_bit(VmRight::Admin) == 0;
        let cl_admin_ok = cl_forbidden & cl_bit(ClusterRight::Admin) == 0;

        // What the role grants once its admin rights are expanded along the chain
        // (cluster admin → VM admin → every VM right), less what it forbids itself.
        let none = Masks::default();
        let vm = role
            .vms
            .as_ref()
            .map_or(none, |v| Masks::from_iter(v.iter(), vm_bit));
        let cl = role
            .clusters
            .as_ref()
            .map_or(none, |v| Masks::from_iter(v.iter(), cl_bit));
        let (vm_allow, vm_forbid, cl_allow, cl_forbid) = (vm.allow, vm.forbid, cl.allow, cl.forbid);
        let all_vm = VmRight::ALL.iter().fold(0, |m, r| m | vm_bit(*r));
        let all_cl = ClusterRight::ALL.iter().fold(0, |m, r| m | cl_bit(*r));
        let cl_admin =
            cl_allow & cl_bit(ClusterRight::Admin) != 0 && cl_forbid & cl_bit(ClusterRight::Admin) == 0;
        let vm_admin =
            (vm_allow & vm_bit(VmRight::Admin) != 0 || cl_admin) && vm_forbid & vm_bit(VmRight::Admin) == 0;
        let vm_granted = (vm_allow | if vm_admin { all_vm } else { 0 }) & !vm_forbid;
        let cl_granted = (cl_allow | if cl_admin { all_cl } else { 0 }) & !cl_forbid;

        let mut missing = Vec::new();
        if vm_granted != 0 {
            let target = vm_reach(&role.scope, clusters, instances, true);
            for right in VmRight::ALL
                .iter()
                .copied()
                .filter(|r| vm_granted & vm_bit(*r) != 0)
            {
                let bit = vm_bit(right);
                let mut held = Reach::default();
                if vm_forbidden & bit == 0 {
                    for (b, r) in held_roles() {
                        let via_vm_admin = vm_admin_ok && r.vm.allow & vm_bit(VmRight::Admin) != 0;
                        let via_cl_admin =
                            vm_admin_ok && cl_admin_ok && r.cl.allow & cl_bit(ClusterRight::Admin) != 0;
                        if r.vm.allow & bit != 0 || via_vm_admin || via_cl_admin {
                            held.merge(vm_reach(
                                &r.spec.scope,
                                &b.spec.clusters,
                                &b.spec.instances,
                                false,
                            ));
                        }
                    }
                }
                if !held.covers(&target) {
                    missing.push(Right::Vm(right));
                }
            }
        }
        if cl_granted != 0 {
            let target = cluster_reach(&role.scope, clusters, instances);
            for right in ClusterRight::ALL
                .iter()
                .copied()
                .filter(|r| cl_granted & cl_bit(*r) != 0)
            {
                let bit = cl_bit(right);
                let mut held = Reach::default();
                if cl_forbidden & bit == 0 {
                    for (b, r) in held_roles() {
                        let via_admin = cl_admin_ok && r.cl.allow & cl_bit(ClusterRight::Admin) != 0;
                        if r.cl.allow & bit != 0 || via_admin {
                            held.merge(cluster_reach(&r.spec.scope, &b.spec.clusters, &b.spec.instances));
                        }
                    }
                }
                if !held.covers(&target) {
                    missing.push(Right::Cluster(right));
                }
            }
        }
        // A narrowed binding confers no system rights, so granting it needs none.
        let narrowed = !clusters.is_empty() || !instances.is_empty();
        if let (Some(sys), false) = (&role.system, narrowed) {
            for (right, _) in sys.iter().filter(|(_, s)| *s == Permission::Allowed) {
                if !self.decide(p, &super::Request::System(right)).allowed {
                    missing.push(Right::System(right));
                }
            }
        }
        if missing.is_empty() { Ok(()) } else { Err(missing) }
    }

    /// [`AuthzIndex::may_grant`] for a RoleBinding, with its role as the index knows it. A
    /// binding to a role that does not exist grants nothing, so it is allowed.
    pub fn may_bind(&self, p: &Principal<'_>, binding: &RoleBindingSpec) -> Result<(), Vec<Right>> {
        match self.find_role(&binding.role_ref) {
            Some(role) => self.may_grant(p, &role.spec, &binding.clusters, &binding.instances),
            None => Ok(()),
        }
    }
}
