//! Building the index: roles compiled, bindings keyed by subject, instances interned
//! with their tags parsed once.

use super::index::*;
use super::preconfigured::preconfigured_roles;
use super::segment::{self, ClusterFacts};
use crate::api::binding::{RoleBinding, RoleBindingSpec};
use crate::api::common::{InstanceRef, SubjectKind};
use crate::api::role::{Role, RoleSpec, ScopeKind};
use crate::inventory::ClusterInventory;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// Collects roles, bindings and instances; [`AuthzIndexBuilder::build`] compiles them.
#[derive(Debug, Default)]
pub struct AuthzIndexBuilder {
    roles: Vec<(Arc<str>, RoleSpec)>,
    bindings: Vec<(Arc<str>, RoleBindingSpec)>,
    /// Per cluster in order of appearance, its facts and whether their tag look-ups are
    /// stale.
    segments: Vec<(Arc<str>, Arc<ClusterFacts>, bool)>,
    /// Facts of a previous index that [`Self::shared_cluster`] may reuse.
    reusable: Vec<Arc<ClusterFacts>>,
}

impl AuthzIndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds Role objects (those named like a preconfigured role are ignored).
    pub fn roles<'a>(mut self, roles: impl IntoIterator<Item = &'a Role>) -> Self {
        for role in roles {
            self = self.role(role.metadata.name.as_deref().unwrap_or_default(), &role.spec);
        }
        self
    }

    pub fn role(mut self, name: &str, spec: &RoleSpec) -> Self {
        self.roles.push((name.into(), spec.clone()));
        self
    }

    pub fn bindings<'a>(mut self, bindings: impl IntoIterator<Item = &'a RoleBinding>) -> Self {
        for b in bindings {
            self = self.binding(b.metadata.name.as_deref().unwrap_or_default(), &b.spec);
        }
        self
    }

    pub fn binding(mut self, name: &str, spec: &RoleBindingSpec) -> Self {
        self.bindings.push((name.into(), spec.clone()));
        self
    }

    /// Lets [`Self::shared_cluster`] take a cluster's facts from `previous` when they
    /// were built from the very same inventory and prefix: a rebuild then costs the
    /// changed clusters' VMs only.
    pub fn reusing(mut self, previous: &AuthzIndex) -> Self {
        self.reusable = previous.segments.iter().map(|s| s.facts.clone()).collect();
        self
    }

    /// Adds every instance of one cluster's inventory, its tags read as the inventory
    /// says (prefix and GWM id map).
    pub fn cluster(mut self, inventory: &ClusterInventory) -> Self {
        let reader = inventory.reader();
        let facts = self.segment(&inventory.cluster);
        for i in &inventory.instances {
            facts.add(&i.name, &i.tags, reader);
        }
        self
    }

    /// [`Self::cluster`], reusing the facts of a previous index (see [`Self::reusing`])
    /// built from this inventory, and keeping the built ones reusable by the next.
    pub fn shared_cluster(mut self, inventory: &Arc<ClusterInventory>) -> Self {
        if self.segments.iter().any(|(n, ..)| **n == *inventory.cluster) {
            // A second inventory of one cluster: merged, as `cluster` does.
            return self.cluster(inventory);
        }
        let facts = match self.reusable.iter().find(|f| f.built_from(inventory)) {
            Some(f) => f.clone(),
            None => Arc::new(ClusterFacts::from_inventory(inventory)),
        };
        self.segments
            .push((inventory.cluster.as_str().into(), facts, false));
        self
    }

    /// Adds one instance with its Ganeti tags, read with `reader` (a tag prefix alone:
    /// no GWM id map).
    pub fn instance<'r>(
        mut self,
        cluster: &str,
        name: &str,
        tag_list: &[String],
        reader: impl Into<crate::tags::Reader<'r>>,
    ) -> Self {
        self.segment(cluster).add(name, tag_list, reader.into());
        self
    }

    /// The facts of `cluster`, to change (copied first if shared); their tag look-ups
    /// are redone at [`Self::build`].
    fn segment(&mut self, cluster: &str) -> &mut ClusterFacts {
        let at = match self.segments.iter().position(|(n, ..)| **n == *cluster) {
            Some(at) => at,
            None => {
                self.segments.push((cluster.into(), Arc::default(), true));
                self.segments.len() - 1
            }
        };
        let (_, facts, stale) = &mut self.segments[at];
        *stale = true;
        Arc::make_mut(facts)
    }

    pub fn build(mut self) -> AuthzIndex {
        let mut ix = AuthzIndex::default();
        // Inventory clusters first, their instances end to end; the overlay follows.
        for (name, mut facts, stale) in self.segments {
            if stale {
                Arc::make_mut(&mut facts).index_tags();
            }
            let id = ix.cluster_names.len() as u32;
            ix.clusters.insert(
                (*name).into(),
                ClusterEntry {
                    id,
                    extra: HashMap::new(),
                },
            );
            ix.cluster_names.push(name);
            for &key in &facts.subject_keys {
                let segments = ix.tagged_segments.entry(key).or_default();
                // Two subjects of one segment may share a key.
                if segments.last() != Some(&id) {
                    segments.push(id);
                }
            }
            let base = ix.overlay_base;
            ix.overlay_base += facts.len();
            ix.segments.push(Segment { facts, base });
        }
        let mut role_ids: HashMap<Arc<str>, u32> = HashMap::new();
        // Built once per process: the index is rebuilt on every change.
        static PRECONFIGURED: LazyLock<Vec<(Arc<str>, RoleSpec)>> = LazyLock::new(|| {
            preconfigured_roles()
                .into_iter()
                .map(|r| (Arc::from(r.metadata.name.as_deref().unwrap_or_default()), r.spec))
                .collect()
        });
        let stored = self
            .roles
            .drain(..)
            .filter(|(name, _)| !PRECONFIGURED.iter().any(|(p, _)| p == name));
        let all: Vec<(Arc<str>, RoleSpec)> = PRECONFIGURED.iter().cloned().chain(stored).collect();
        for (name, spec) in all {
            let role = ix.compile_role(name.clone(), spec);
            role_ids.insert(name, ix.roles.len() as u32);
            ix.roles.push(role);
        }
        for (name, spec) in self.bindings {
            let Some(&role) = role_ids.get(&*spec.role_ref) else {
                ix.dangling.push(name);
                continue;
            };
            let id = ix.bindings.len() as u32;
            let clusters = sorted(spec.clusters.iter().map(|c| ix.cluster_id(c)));
            let instances = sorted(spec.instances.iter().map(|i| ix.instance_ref_id(i)));
            let reach_clusters = sorted(
                clusters
                    .iter()
                    .copied()
                    .chain(instances.iter().map(|i| ix.cluster_of(*i))),
            );
            for s in &spec.subjects {
                let map = match s.kind {
                    SubjectKind::User => &mut ix.by_user,
                    SubjectKind::Group => &mut ix.by_group,
                };
                let list = map.entry(s.name.as_str().into()).or_default();
                // A subject listed twice in one binding needs the binding once.
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
            ix.bindings.push(CompiledBinding {
                name,
                role,
                narrowed: !spec.clusters.is_empty() || !spec.instances.is_empty(),
                spec,
                clusters,
                instances,
                reach_clusters,
            });
        }
        ix
    }
}

fn sorted(ids: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl AuthzIndex {
    pub(super) fn cluster_id(&mut self, name: &str) -> u32 {
        if let Some(e) = self.clusters.get(name) {
            return e.id;
        }
        let id = self.cluster_names.len() as u32;
        self.cluster_names.push(name.into());
        self.clusters.insert(
            name.into(),
            ClusterEntry {
                id,
                extra: HashMap::new(),
            },
        );
        // No inventory: no instances, after all the inventories' (at the overlay).
        self.segments.push(Segment {
            facts: segment::empty(),
            base: self.overlay_base,
        });
        id
    }

    /// The id of an instance a binding or role scope names: its inventory's, else one in
    /// the overlay.
    pub(super) fn instance_id(&mut self, cluster: &str, name: &str) -> u32 {
        let cid = self.cluster_id(cluster);
        if let Some(id) = self.instance_id_of(cluster, name) {
            return id;
        }
        let id = self.instance_count();
        let entry = self.clusters.get_mut(cluster).expect("cluster just interned");
        entry.extra.insert(name.into(), id);
        self.overlay.push((cid, InstanceFacts::named(name.into())));
        id
    }

    pub(super) fn instance_ref_id(&mut self, r: &InstanceRef) -> u32 {
        self.instance_id(&r.cluster, &r.name)
    }

    pub(super) fn compile_role(&mut self, name: Arc<str>, spec: RoleSpec) -> CompiledRole {
        let vm = spec
            .vms
            .as_ref()
            .map_or_else(Masks::default, |r| Masks::from_iter(r.iter(), vm_bit));
        let cl = spec
            .clusters
            .as_ref()
            .map_or_else(Masks::default, |r| Masks::from_iter(r.iter(), cl_bit));
        let sys = spec
            .system
            .as_ref()
            .map_or_else(Masks::default, |r| Masks::from_iter(r.iter(), sys_bit));
        let scope = spec.scope.kind;
        let (mut scope_clusters, mut scope_instances) = (Vec::new(), Vec::new());
        match scope {
            ScopeKind::Clusters => {
                scope_clusters = sorted(spec.scope.clusters.iter().map(|c| self.cluster_id(c)))
            }
            ScopeKind::Instances => {
                scope_instances = sorted(spec.scope.instances.iter().map(|i| self.instance_ref_id(i)))
            }
            ScopeKind::All | ScopeKind::Own => {}
        }
        let scope_instance_clusters = sorted(scope_instances.iter().map(|i| self.cluster_of(*i)));
        CompiledRole {
            name,
            spec,
            vm,
            cl,
            sys,
            scope,
            scope_clusters,
            scope_instances,
            scope_instance_clusters,
        }
    }
}
