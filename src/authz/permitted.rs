//! Which VMs a principal may hold one right on, without asking about every VM.
//!
//! A VM right is granted only through a binding that reaches the VM or through a
//! permission tag on it naming the principal (see [`AuthzIndex::decide`]). So the
//! candidates are: the VMs whose tags (owner or permission) name the user or one of its
//! groups, which covers the tag grants and every `Own` scope; and, for each of the
//! principal's bindings whose role can grant the right (allows it, VM `admin` or cluster
//! `admin`), the VMs it reaches: whole clusters for `All` and `Clusters` scopes, the
//! listed VMs for `Instances` scopes and narrowings. Each candidate is then decided by
//! the engine itself, so forbidden rights, locks and the admin chain count as in
//! `decide`.

use super::Principal;
use super::index::{AuthzIndex, CL_ADMIN, VM_ADMIN, contains, vm_bit};
use super::segment::subject_key;
use crate::api::common::SubjectKind;
use crate::api::role::{ScopeKind, VmRight};

/// The VMs worth deciding for one principal and right.
#[derive(Debug, PartialEq, Eq)]
enum Candidates {
    /// A binding reaches every VM: decide them all.
    Every,
    /// The VMs of `clusters` (sorted cluster ids), plus `instances` (sorted instance ids,
    /// none on those clusters).
    Some { clusters: Vec<u32>, instances: Vec<u32> },
}

impl AuthzIndex {
    /// The instances `p` may hold `right` on (exactly those of the inventories' instances
    /// for which [`AuthzIndex::decide`] allows `right`), as (cluster, instance name)
    /// pairs sorted by cluster name, then instance name.
    ///
    /// Only instances added from an inventory are listed: an instance merely named by a
    /// binding or a role scope is not a VM anyone can see, though `decide` would allow it.
    ///
    /// Cost: the principal's bindings and tagged instances, plus one decision per
    /// candidate (the VMs of the clusters its bindings reach whole, the VMs they list,
    /// the VMs tagged for it), plus sorting the answer. A principal whose bindings do
    /// not reach whole clusters costs nothing per VM of the index. One binding of an
    /// un-narrowed `All` scope (an administrator) makes every VM a candidate.
    pub fn permitted_instances(&self, p: &Principal<'_>, right: VmRight) -> Vec<(&str, &str)> {
        let mine: Vec<u32> = self.bindings_of(p).collect();
        let allowed = |id: u32| {
            self.facts(id).in_inventory
                && self
                    .decide_vm(p, mine.iter().copied(), &self.instance_target(p, id), right)
                    .allowed
        };
        let ids: Vec<u32> = match self.candidates(p, &mine, right) {
            // The overlay's instances are in no inventory: only the segments count.
            Candidates::Every => (0..self.overlay_base).filter(|&id| allowed(id)).collect(),
            Candidates::Some { clusters, instances } => clusters
                .iter()
                .flat_map(|&c| self.segment_ids(c))
                .chain(instances)
                .filter(|&id| allowed(id))
                .collect(),
        };
        let mut out: Vec<(&str, &str)> = ids.into_iter().map(|id| self.pair(id)).collect();
        out.sort_unstable();
        out
    }

    fn pair(&self, id: u32) -> (&str, &str) {
        let (cluster, f) = self.locate(id);
        (&self.cluster_names[cluster as usize], &f.name)
    }

    /// A superset of the VMs on which `decide` may allow `right` to `p` (whose bindings
    /// are `mine`), without duplicates.
    fn candidates(&self, p: &Principal<'_>, mine: &[u32], right: VmRight) -> Candidates {
        let grants = vm_bit(right) | VM_ADMIN;
        let mut clusters: Vec<u32> = Vec::new();
        // Tag grants and owners (the only VMs an `Own` scope reaches), cluster by cluster.
        // Only the segments naming the user or one of its groups.
        let keys = std::iter::once(subject_key(SubjectKind::User, p.user))
            .chain(p.groups.iter().map(|g| subject_key(SubjectKind::Group, g)));
        let mut segments: Vec<u32> = keys
            .filter_map(|k| self.tagged_segments.get(&k))
            .flatten()
            .copied()
            .collect();
        segments.sort_unstable();
        segments.dedup();
        let mut instances: Vec<u32> = Vec::new();
        for c in segments {
            let seg = &self.segments[c as usize];
            let f = &seg.facts;
            let tagged = std::iter::once(f.tagged_users.get(p.user))
                .chain(p.groups.iter().map(|g| f.tagged_groups.get(g.as_str())));
            instances.extend(tagged.flatten().flatten().map(|local| seg.base + local));
        }
        for &id in mine {
            let b = &self.bindings[id as usize];
            let role = &self.roles[b.role as usize];
            if role.vm.allow & grants == 0 && role.cl.allow & CL_ADMIN == 0 {
                continue;
            }
            match role.scope {
                ScopeKind::All if !b.narrowed => return Candidates::Every,
                ScopeKind::All => {
                    clusters.extend(&b.clusters);
                    instances.extend(&b.instances);
                }
                ScopeKind::Own => {}
                ScopeKind::Clusters if !b.narrowed => clusters.extend(&role.scope_clusters),
                ScopeKind::Clusters => {
                    let in_scope = |c: u32| contains(&role.scope_clusters, Some(c));
                    clusters.extend(b.clusters.iter().copied().filter(|&c| in_scope(c)));
                    instances.extend(
                        b.instances
                            .iter()
                            .copied()
                            .filter(|&i| in_scope(self.cluster_of(i))),
                    );
                }
                ScopeKind::Instances => instances.extend(role.scope_instances.iter().copied().filter(|&i| {
                    !b.narrowed
                        || contains(&b.clusters, Some(self.cluster_of(i)))
                        || contains(&b.instances, Some(i))
                })),
            }
        }
        clusters.sort_unstable();
        clusters.dedup();
        instances.retain(|&i| !contains(&clusters, Some(self.cluster_of(i))));
        instances.sort_unstable();
        instances.dedup();
        Candidates::Some { clusters, instances }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::binding::RoleBindingSpec;
    use crate::api::common::{InstanceRef, Subject};
    use crate::api::role::{Permission, RoleSpec, Scope, VmRights};
    use crate::authz::{Request, USER};

    const P: &str = crate::tags::DEFAULT_PREFIX;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn bind(role: &str, subject: Subject) -> RoleBindingSpec {
        RoleBindingSpec {
            role_ref: role.into(),
            subjects: vec![subject],
            clusters: vec![],
            instances: vec![],
        }
    }

    fn role(scope: Scope, allow: &[VmRight], forbid: &[VmRight]) -> RoleSpec {
        let mut vms = VmRights::default();
        allow.iter().for_each(|r| vms.set(*r, Some(Permission::Allowed)));
        forbid
            .iter()
            .for_each(|r| vms.set(*r, Some(Permission::Forbidden)));
        RoleSpec {
            description: None,
            vms: Some(vms),
            clusters: None,
            system: None,
            scope,
        }
    }

    fn iref(cluster: &str, name: &str) -> InstanceRef {
        InstanceRef {
            cluster: cluster.into(),
            name: name.into(),
        }
    }

    /// What `decide` allows, instance by instance over the whole inventory.
    fn scan<'a>(ix: &'a AuthzIndex, p: &Principal<'_>, right: VmRight) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<(&str, &str)> = (0..ix.instance_count())
            .filter(|&id| ix.facts(id).in_inventory)
            .map(|id| ix.pair(id))
            .filter(|&(cluster, instance)| {
                ix.decide(
                    p,
                    &Request::Vm {
                        cluster,
                        instance,
                        right,
                    },
                )
                .allowed
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn ids(ix: &AuthzIndex, pairs: &[(&str, &str)]) -> Vec<u32> {
        let mut v: Vec<u32> = pairs
            .iter()
            .map(|(c, i)| ix.instance_id_of(c, i).unwrap())
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn permitted_instances_of_a_group_owner() {
        let ix = AuthzIndex::builder()
            .binding("erin-user", &bind(USER, Subject::user("erin")))
            .instance("c1", "team-vm", &strings(&["ganetimgr:group:team"]), P)
            .instance(
                "c1",
                "team-locked",
                &strings(&["GANETI_WEB_MANAGER:owner:G:team", "ganetimgr:adminlock"]),
                P,
            )
            .instance("c1", "bobs", &strings(&["ganetimgr:user:bob"]), P)
            .instance("c2", "solo", &strings(&["ganetimgr:user:erin"]), P)
            .instance("c2", "untagged", &[], P)
            .build();
        let team = strings(&["team"]);
        let erin = Principal::new("erin", &team);
        let view = ix.permitted_instances(&erin, VmRight::View);
        assert_eq!(view, [("c1", "team-locked"), ("c1", "team-vm"), ("c2", "solo")]);
        assert_eq!(view, scan(&ix, &erin, VmRight::View));
        // The lock refuses actions, not visibility.
        let start = ix.permitted_instances(&erin, VmRight::Start);
        assert_eq!(start, [("c1", "team-vm"), ("c2", "solo")]);
        assert_eq!(start, scan(&ix, &erin, VmRight::Start));
        // `user` does not allow modify.
        assert!(ix.permitted_instances(&erin, VmRight::Modify).is_empty());
        // Out of the group, the group's VMs are gone.
        let alone = Principal::new("erin", &[]);
        assert_eq!(ix.permitted_instances(&alone, VmRight::View), [("c2", "solo")]);
        // A group member without a binding: ownership alone grants nothing.
        let frank = Principal::new("frank", &team);
        assert!(ix.permitted_instances(&frank, VmRight::View).is_empty());
        // Only the tagged VMs were candidates: no cluster was scanned.
        assert_eq!(
            ix.candidates(&erin, &ix.bindings_of(&erin).collect::<Vec<_>>(), VmRight::View),
            Candidates::Some {
                clusters: vec![],
                instances: ids(&ix, &[("c1", "team-vm"), ("c1", "team-locked"), ("c2", "solo")]),
            }
        );
    }

    #[test]
    fn permitted_instances_through_a_cluster_scoped_binding() {
        let on_c2 = Scope {
            kind: ScopeKind::Clusters,
            clusters: vec!["c2".into()],
            instances: vec![],
        };
        let all = Scope {
            kind: ScopeKind::All,
            ..Scope::default()
        };
        let hide_c2_a = Scope {
            kind: ScopeKind::Instances,
            clusters: vec![],
            instances: vec![iref("c2", "a")],
        };
        let mut narrowed = bind("viewer", Subject::group("ops"));
        narrowed.clusters = vec!["c3".into()];
        narrowed.instances = vec![iref("c1", "x"), iref("c1", "ghost")];
        let ix = AuthzIndex::builder()
            .role("c2-operator", &role(on_c2, &[VmRight::View, VmRight::Start], &[]))
            .role("viewer", &role(all, &[VmRight::View], &[]))
            .role("hide", &role(hide_c2_a, &[], &[VmRight::Start]))
            .binding("ops-c2", &bind("c2-operator", Subject::group("ops")))
            .binding("ops-view", &narrowed)
            .binding("dan-hide", &bind("hide", Subject::user("dan")))
            .instance("c1", "x", &[], P)
            .instance("c1", "y", &[], P)
            .instance("c2", "a", &[], P)
            .instance("c2", "b", &strings(&["ganetimgr:adminlock"]), P)
            .instance("c2", "c", &[], P)
            .instance("c3", "z", &[], P)
            .build();
        let ops = strings(&["ops"]);
        let dan = Principal::new("dan", &ops);
        let view = ix.permitted_instances(&dan, VmRight::View);
        assert_eq!(
            view,
            [("c1", "x"), ("c2", "a"), ("c2", "b"), ("c2", "c"), ("c3", "z")]
        );
        assert_eq!(view, scan(&ix, &dan, VmRight::View));
        // c2/b is locked, c2/a forbidden to dan, and the viewer role does not start.
        let start = ix.permitted_instances(&dan, VmRight::Start);
        assert_eq!(start, [("c2", "c")]);
        assert_eq!(start, scan(&ix, &dan, VmRight::Start));
        // c1/ghost, named by the binding only, is allowed but not a VM of any inventory.
        let ghost = Request::Vm {
            cluster: "c1",
            instance: "ghost",
            right: VmRight::View,
        };
        assert!(ix.decide(&dan, &ghost).allowed);
        // Candidates: the whole clusters c2 and c3, and the listed c1 VMs.
        let c = |n: &str| ix.clusters[n].id;
        assert_eq!(
            ix.candidates(&dan, &ix.bindings_of(&dan).collect::<Vec<_>>(), VmRight::View),
            Candidates::Some {
                clusters: vec![c("c2"), c("c3")],
                instances: vec![
                    ix.instance_id_of("c1", "x").unwrap(),
                    ix.instance_id_of("c1", "ghost").unwrap()
                ],
            }
        );
    }
}
