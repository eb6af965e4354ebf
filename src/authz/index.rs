//! The index: roles and bindings compiled to bit masks and id lists, bindings keyed by
//! subject, instances keyed by (cluster, name) with their tags parsed once.

use super::build::AuthzIndexBuilder;
use super::preconfigured::ADMINISTRATOR;
use super::segment::ClusterFacts;
use super::{Decision, Grant, Principal, Reason, Request, Right};
use crate::api::binding::{RoleBinding, RoleBindingSpec};
use crate::api::common::Subject;
use crate::api::role::{ClusterRight, Permission, Role, RoleSpec, ScopeKind, SystemRight, VmRight};
use crate::inventory::ClusterInventory;
use crate::tags::GwmPerm;
use std::collections::HashMap;
use std::sync::Arc;

/// Position of a binding in the index (see [`AuthzIndex::binding_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingId(pub(crate) u32);

/// Position of an instance in the index (see [`AuthzIndex::instance_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub(crate) u32);

pub(crate) const fn vm_bit(r: VmRight) -> u32 {
    1 << r as u32
}
pub(crate) const fn cl_bit(r: ClusterRight) -> u32 {
    1 << r as u32
}
pub(crate) const fn sys_bit(r: SystemRight) -> u32 {
    1 << r as u32
}
pub(super) const VM_ADMIN: u32 = vm_bit(VmRight::Admin);
pub(super) const CL_ADMIN: u32 = cl_bit(ClusterRight::Admin);
/// Rights an admin lock leaves alone.
const LOCK_EXEMPT: u32 = vm_bit(VmRight::View) | vm_bit(VmRight::Lock) | vm_bit(VmRight::Isolate);

/// Allowed and forbidden rights of one kind, as bit masks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Masks {
    pub allow: u32,
    pub forbid: u32,
}

impl Masks {
    pub(crate) fn from_iter<R: Copy>(
        iter: impl Iterator<Item = (R, Permission)>,
        bit: impl Fn(R) -> u32,
    ) -> Self {
        let mut m = Masks::default();
        for (r, p) in iter {
            match p {
                Permission::Allowed => m.allow |= bit(r),
                Permission::Forbidden => m.forbid |= bit(r),
            }
        }
        m
    }
    fn any(&self, mask: u32) -> bool {
        (self.allow | self.forbid) & mask != 0
    }
}

#[derive(Debug)]
pub(crate) struct CompiledRole {
    pub name: Arc<str>,
    pub spec: RoleSpec,
    pub vm: Masks,
    pub cl: Masks,
    pub sys: Masks,
    pub scope: ScopeKind,
    /// Sorted cluster ids of scope `Clusters`.
    pub scope_clusters: Vec<u32>,
    /// Sorted instance ids of scope `Instances`.
    pub scope_instances: Vec<u32>,
    /// Sorted cluster ids of the instances of scope `Instances` (its cluster reach).
    pub scope_instance_clusters: Vec<u32>,
}

#[derive(Debug)]
pub(crate) struct CompiledBinding {
    pub name: Arc<str>,
    pub role: u32,
    pub spec: RoleBindingSpec,
    pub narrowed: bool,
    pub clusters: Vec<u32>,
    pub instances: Vec<u32>,
    /// `clusters` plus the clusters of `instances`, sorted: the cluster reach narrowing.
    pub reach_clusters: Vec<u32>,
}

/// A permission tag on an instance, parsed.
#[derive(Debug, Clone)]
pub(crate) struct TagGrant {
    pub tag: Box<str>,
    pub subject: Subject,
    pub perm: GwmPerm,
    pub rights: u32,
}

/// One instance's facts; its cluster is that of the segment (or overlay entry) holding it.
#[derive(Debug, Clone)]
pub(crate) struct InstanceFacts {
    pub name: Arc<str>,
    /// Owners, with the tag that says so.
    pub owners: Vec<(Subject, Box<str>)>,
    pub grants: Vec<TagGrant>,
    pub locked: bool,
    pub isolated: bool,
    /// Added from an inventory ([`AuthzIndexBuilder::instance`]), not only named by a
    /// binding or a role scope.
    pub in_inventory: bool,
}

impl InstanceFacts {
    pub(crate) fn named(name: Arc<str>) -> Self {
        Self {
            name,
            owners: Vec::new(),
            grants: Vec::new(),
            locked: false,
            isolated: false,
            in_inventory: false,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct ClusterEntry {
    pub(super) id: u32,
    /// Instances of this cluster that only bindings or role scopes name (global ids, in
    /// the overlay).
    pub(super) extra: HashMap<Box<str>, u32>,
}

/// One cluster's facts placed in the index: global id = `base` + local id.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) facts: Arc<ClusterFacts>,
    pub(crate) base: u32,
}

/// Roles, bindings and instance facts, indexed for [`AuthzIndex::decide`].
#[derive(Debug, Default)]
pub struct AuthzIndex {
    pub(crate) roles: Vec<CompiledRole>,
    pub(crate) bindings: Vec<CompiledBinding>,
    pub(super) by_user: HashMap<Box<str>, Vec<u32>>,
    pub(super) by_group: HashMap<Box<str>, Vec<u32>>,
    pub(super) clusters: HashMap<Box<str>, ClusterEntry>,
    pub(crate) cluster_names: Vec<Arc<str>>,
    /// Per cluster id, its inventory's instances: ids `base..base + len`, segments end
    /// to end in cluster id order (clusters without an inventory have none).
    pub(crate) segments: Vec<Segment>,
    /// Ids from here on are the overlay's.
    pub(crate) overlay_base: u32,
    /// Instances only bindings or role scopes name, with their cluster id.
    pub(crate) overlay: Vec<(u32, InstanceFacts)>,
    /// Per [`subject_key`](super::segment::subject_key), the segments (cluster ids,
    /// ascending) whose tags name that subject: a user's look-up visits those only, not
    /// every cluster's.
    pub(crate) tagged_segments: HashMap<u64, Vec<u32>>,
    pub(super) dangling: Vec<Arc<str>>,
}

pub(super) fn contains(sorted: &[u32], id: Option<u32>) -> bool {
    id.is_some_and(|id| sorted.binary_search(&id).is_ok())
}

/// Where one request points, resolved once.
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    pub(super) cluster: Option<u32>,
    pub(super) instance: Option<u32>,
    pub(super) facts: Option<&'a InstanceFacts>,
    pub(super) owned: bool,
}

impl AuthzIndex {
    pub fn builder() -> AuthzIndexBuilder {
        AuthzIndexBuilder::new()
    }

    /// Builds from Role and RoleBinding objects and cluster inventories.
    pub fn build<'a>(
        roles: &[Role],
        bindings: &[RoleBinding],
        clusters: impl IntoIterator<Item = &'a ClusterInventory>,
    ) -> Self {
        let mut b = AuthzIndexBuilder::new().roles(roles).bindings(bindings);
        for inventory in clusters {
            b = b.cluster(inventory);
        }
        b.build()
    }

    /// Bindings of a principal: the user's, then each group's (a binding naming both the
    /// user and a group may come twice; combination is idempotent).
    pub(crate) fn bindings_of<'s>(&'s self, p: &Principal<'s>) -> impl Iterator<Item = u32> + 's {
        let user = self.by_user.get(p.user).map(Vec::as_slice).unwrap_or_default();
        let groups = p
            .groups
            .iter()
            .filter_map(|g| self.by_group.get(g.as_str()))
            .flat_map(|v| v.iter().copied());
        user.iter().copied().chain(groups)
    }

    fn target(&self, p: &Principal<'_>, cluster: &str, instance: Option<&str>) -> Target<'_> {
        let entry = self.clusters.get(cluster);
        let iid = instance.and_then(|n| entry.and_then(|e| self.lookup_in(e, n)));
        let facts = iid.map(|i| self.facts(i));
        Target {
            cluster: entry.map(|e| e.id),
            instance: iid,
            facts,
            owned: facts.is_some_and(|f| f.owners.iter().any(|(s, _)| p.is(s))),
        }
    }

    /// The target of a VM request on instance `id`: what [`Self::target`] resolves for its
    /// (cluster, name), without the look-ups.
    pub(super) fn instance_target(&self, p: &Principal<'_>, id: u32) -> Target<'_> {
        let (cluster, f) = self.locate(id);
        Target {
            cluster: Some(cluster),
            instance: Some(id),
            facts: Some(f),
            owned: f.owners.iter().any(|(s, _)| p.is(s)),
        }
    }

    /// Whether binding `b` reaches the VM of `t` (role scope ∩ binding narrowing).
    pub(super) fn vm_reach(&self, b: &CompiledBinding, role: &CompiledRole, t: &Target<'_>) -> bool {
        let scoped = match role.scope {
            ScopeKind::All => true,
            ScopeKind::Own => t.owned,
            ScopeKind::Clusters => contains(&role.scope_clusters, t.cluster),
            ScopeKind::Instances => contains(&role.scope_instances, t.instance),
        };
        scoped && (!b.narrowed || contains(&b.clusters, t.cluster) || contains(&b.instances, t.instance))
    }

    /// Whether binding `b` reaches the cluster of `t`.
    pub(super) fn cluster_reach(&self, b: &CompiledBinding, role: &CompiledRole, t: &Target<'_>) -> bool {
        let scoped = match role.scope {
            ScopeKind::All | ScopeKind::Own => true,
            ScopeKind::Clusters => contains(&role.scope_clusters, t.cluster),
            ScopeKind::Instances => contains(&role.scope_instance_clusters, t.cluster),
        };
        scoped && (!b.narrowed || contains(&b.reach_clusters, t.cluster))
    }

    /// Decides one request for one principal.
    pub fn decide(&self, p: &Principal<'_>, request: &Request<'_>) -> Decision {
        match *request {
            Request::Vm {
                cluster,
                instance,
                right,
            } => self.decide_vm(
                p,
                self.bindings_of(p),
                &self.target(p, cluster, Some(instance)),
                right,
            ),
            Request::Cluster { cluster, right } => {
                self.decide_cluster(p, &self.target(p, cluster, None), right)
            }
            Request::System(right) => self.decide_system(p, right),
        }
    }

    /// Decides a VM right on `t`; `mine` are `p`'s bindings ([`Self::bindings_of`]), passed
    /// in so that a caller deciding many VMs looks them up once.
    pub(super) fn decide_vm(
        &self,
        p: &Principal<'_>,
        mine: impl Iterator<Item = u32>,
        t: &Target<'_>,
        right: VmRight,
    ) -> Decision {
        let bit = vm_bit(right);
        let mut allow: Option<Grant> = None;
        let mut forbid: Option<BindingId> = None;
        let mut vm_admin: Option<Grant> = None;
        let mut vm_admin_forbid: Option<BindingId> = None;
        let mut cl_admin: Option<Grant> = None;
        let mut cl_admin_forbid: Option<BindingId> = None;
        for id in mine {
            let b = &self.bindings[id as usize];
            let role = &self.roles[b.role as usize];
            let vm_relevant = role.vm.any(bit | VM_ADMIN) || role.cl.allow & CL_ADMIN != 0;
            let cl_relevant = role.cl.forbid & CL_ADMIN != 0;
            if !vm_relevant && !cl_relevant {
                continue;
            }
            let binding = BindingId(id);
            if vm_relevant && self.vm_reach(b, role, t) {
                if role.vm.forbid & bit != 0 {
                    forbid.get_or_insert(binding);
                }
                if role.vm.forbid & VM_ADMIN != 0 {
                    vm_admin_forbid.get_or_insert(binding);
                }
                if role.vm.allow & bit != 0 {
                    allow.get_or_insert(Grant::Role {
                        binding,
                        via: Right::Vm(right),
                    });
                }
                if role.vm.allow & VM_ADMIN != 0 {
                    vm_admin.get_or_insert(Grant::Role {
                        binding,
                        via: Right::Vm(VmRight::Admin),
                    });
                }
                if role.cl.allow & CL_ADMIN != 0 {
                    cl_admin.get_or_insert(Grant::Role {
                        binding,
                        via: Right::Cluster(ClusterRight::Admin),
                    });
                }
            }
            if cl_relevant && self.cluster_reach(b, role, t) {
                cl_admin_forbid.get_or_insert(binding);
            }
        }
        let cl_admin_held = if cl_admin_forbid.is_none() { cl_admin } else { None };
        // VM admin through a role (or cluster admin): what lifts an admin lock.
        let role_admin = if vm_admin_forbid.is_none() {
            vm_admin.or(cl_admin_held)
        } else {
            None
        };
        let (mut tag_allow, mut tag_admin) = (None, None);
        if let Some(f) = t.facts {
            for (n, g) in f.grants.iter().enumerate() {
                if g.rights & (bit | VM_ADMIN) == 0 || !p.is(&g.subject) {
                    continue;
                }
                let grant = Grant::Tag {
                    instance: InstanceId(t.instance.unwrap_or_default()),
                    tag: n as u32,
                };
                if g.rights & bit != 0 {
                    tag_allow.get_or_insert(grant);
                }
                if g.rights & VM_ADMIN != 0 {
                    tag_admin.get_or_insert(grant);
                }
            }
        }
        if let Some(binding) = forbid {
            return Decision::denied(Reason::Forbidden {
                binding,
                right: Right::Vm(right),
            });
        }
        let admin = if vm_admin_forbid.is_none() {
            role_admin.or(tag_admin)
        } else {
            None
        };
        let grant = if right == VmRight::Admin {
            admin
        } else {
            allow.or(tag_allow).or(admin)
        };
        let Some(grant) = grant else {
            if let Some(binding) =
                vm_admin_forbid.filter(|_| vm_admin.or(tag_admin).or(cl_admin_held).is_some())
            {
                return Decision::denied(Reason::Forbidden {
                    binding,
                    right: Right::Vm(VmRight::Admin),
                });
            }
            if let Some(binding) = cl_admin_forbid.filter(|_| cl_admin.is_some()) {
                return Decision::denied(Reason::Forbidden {
                    binding,
                    right: Right::Cluster(ClusterRight::Admin),
                });
            }
            return Decision::denied(Reason::NotGranted);
        };
        if t.facts.is_some_and(|f| f.locked) && bit & LOCK_EXEMPT == 0 && role_admin.is_none() {
            return Decision::denied(Reason::AdminLock);
        }
        Decision::granted(grant)
    }

    fn decide_cluster(&self, p: &Principal<'_>, t: &Target<'_>, right: ClusterRight) -> Decision {
        let bit = cl_bit(right);
        let (mut allow, mut forbid, mut admin, mut admin_forbid) = (None, None, None, None);
        for id in self.bindings_of(p) {
            let b = &self.bindings[id as usize];
            let role = &self.roles[b.role as usize];
            if !role.cl.any(bit | CL_ADMIN) || !self.cluster_reach(b, role, t) {
                continue;
            }
            let binding = BindingId(id);
            if role.cl.forbid & bit != 0 {
                forbid.get_or_insert(binding);
            }
            if role.cl.forbid & CL_ADMIN != 0 {
                admin_forbid.get_or_insert(binding);
            }
            if role.cl.allow & bit != 0 {
                allow.get_or_insert(binding);
            }
            if role.cl.allow & CL_ADMIN != 0 {
                admin.get_or_insert(binding);
            }
        }
        if let Some(binding) = forbid {
            return Decision::denied(Reason::Forbidden {
                binding,
                right: Right::Cluster(right),
            });
        }
        if let Some(binding) = allow {
            return Decision::granted(Grant::Role {
                binding,
                via: Right::Cluster(right),
            });
        }
        match (admin, admin_forbid) {
            (Some(binding), None) => Decision::granted(Grant::Role {
                binding,
                via: Right::Cluster(ClusterRight::Admin),
            }),
            (Some(_), Some(binding)) => Decision::denied(Reason::Forbidden {
                binding,
                right: Right::Cluster(ClusterRight::Admin),
            }),
            (None, _) => Decision::denied(Reason::NotGranted),
        }
    }

    fn decide_system(&self, p: &Principal<'_>, right: SystemRight) -> Decision {
        let bit = sys_bit(right);
        let mut allow = None;
        for id in self.bindings_of(p) {
            let b = &self.bindings[id as usize];
            let role = &self.roles[b.role as usize];
            if role.sys.forbid & bit != 0 {
                return Decision::denied(Reason::Forbidden {
                    binding: BindingId(id),
                    right: Right::System(right),
                });
            }
            if role.sys.allow & bit != 0 && !b.narrowed {
                allow.get_or_insert(BindingId(id));
            }
        }
        match allow {
            Some(binding) => Decision::granted(Grant::Role {
                binding,
                via: Right::System(right),
            }),
            None => Decision::denied(Reason::NotGranted),
        }
    }

    /// Whether the principal has an un-narrowed binding to `administrator`.
    pub fn is_administrator(&self, p: &Principal<'_>) -> bool {
        self.bindings_of(p).any(|id| {
            let b = &self.bindings[id as usize];
            !b.narrowed && &*self.roles[b.role as usize].name == ADMINISTRATOR
        })
    }

    /// Names of the bindings whose role does not exist.
    pub fn dangling_bindings(&self) -> &[Arc<str>] {
        &self.dangling
    }

    pub fn binding_name(&self, id: BindingId) -> &str {
        &self.bindings[id.0 as usize].name
    }

    /// The role a binding refers to.
    pub fn binding_role(&self, id: BindingId) -> &str {
        &self.roles[self.bindings[id.0 as usize].role as usize].name
    }

    /// (cluster, instance name) of an instance id.
    pub fn instance_ref(&self, id: InstanceId) -> (&str, &str) {
        let (cluster, f) = self.locate(id.0);
        (&self.cluster_names[cluster as usize], &f.name)
    }

    /// The tag behind a [`Grant::Tag`].
    pub fn tag(&self, instance: InstanceId, tag: u32) -> &str {
        &self.facts(instance.0).grants[tag as usize].tag
    }

    /// Owners of an instance (from owner tags), if the index knows it.
    pub fn owners(&self, cluster: &str, instance: &str) -> impl Iterator<Item = &Subject> {
        let f = self.find_instance(cluster, instance);
        f.into_iter().flat_map(|f| f.owners.iter().map(|(s, _)| s))
    }

    /// Whether an instance carries `ganetimgr:adminlock`.
    pub fn is_locked(&self, cluster: &str, instance: &str) -> bool {
        self.find_instance(cluster, instance).is_some_and(|f| f.locked)
    }

    /// Whether an instance carries `ganetimgr:isolate`.
    pub fn is_isolated(&self, cluster: &str, instance: &str) -> bool {
        self.find_instance(cluster, instance).is_some_and(|f| f.isolated)
    }

    pub(crate) fn find_instance(&self, cluster: &str, instance: &str) -> Option<&InstanceFacts> {
        Some(self.facts(self.instance_id_of(cluster, instance)?))
    }

    /// The id of (cluster, instance name), if the index knows it.
    pub(crate) fn instance_id_of(&self, cluster: &str, instance: &str) -> Option<u32> {
        self.lookup_in(self.clusters.get(cluster)?, instance)
    }

    fn lookup_in(&self, entry: &ClusterEntry, instance: &str) -> Option<u32> {
        let seg = &self.segments[entry.id as usize];
        match seg.facts.by_name.get(instance) {
            Some(&local) => Some(seg.base + local),
            None => entry.extra.get(instance).copied(),
        }
    }

    /// How many instance ids there are (`0..instance_count()`).
    pub(crate) fn instance_count(&self) -> u32 {
        self.overlay_base + self.overlay.len() as u32
    }

    /// The ids of the inventory instances of cluster `c`.
    pub(crate) fn segment_ids(&self, c: u32) -> std::ops::Range<u32> {
        let seg = &self.segments[c as usize];
        seg.base..seg.base + seg.facts.len()
    }

    /// Cluster id and facts of instance `id`.
    pub(crate) fn locate(&self, id: u32) -> (u32, &InstanceFacts) {
        if id >= self.overlay_base {
            let (c, f) = &self.overlay[(id - self.overlay_base) as usize];
            return (*c, f);
        }
        // The last segment starting at or before `id`: an empty one there is followed by
        // segments of the same base, so the last is the one holding `id`.
        let c = self.segments.partition_point(|s| s.base <= id) - 1;
        let seg = &self.segments[c];
        (c as u32, &seg.facts.instances[(id - seg.base) as usize])
    }

    pub(crate) fn facts(&self, id: u32) -> &InstanceFacts {
        self.locate(id).1
    }

    pub(crate) fn cluster_of(&self, id: u32) -> u32 {
        self.locate(id).0
    }

    pub(crate) fn find_role(&self, name: &str) -> Option<&CompiledRole> {
        self.roles.iter().find(|r| &*r.name == name)
    }
}
