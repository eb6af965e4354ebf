//! One cluster's instance facts: what the index knows of a cluster's VMs, built from its
//! inventory alone, so that a rebuild after one cluster's sync re-parses that cluster's
//! tags only and shares every other cluster's facts (`Arc`) with the previous index.
//!
//! Instance ids inside a segment are local (0..len); the index lays segments end to end
//! and adds each segment's base to make its global [`InstanceId`](super::InstanceId)s.

use super::index::{InstanceFacts, TagGrant, vm_bit};
use crate::api::common::SubjectKind;
use crate::inventory::ClusterInventory;
use crate::tags::{self, ParsedTag};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock};

/// The key of a subject in the index's subject -> segments table: a hash, so that table
/// holds no copy of the names. A collision only makes a look-up visit a segment that
/// names neither subject, where it finds nothing. The hasher's keys are random per
/// process (not per index) so a segment's keys stay valid in every index sharing it.
pub(crate) fn subject_key(kind: SubjectKind, name: &str) -> u64 {
    static HASHER: LazyLock<std::collections::hash_map::RandomState> = LazyLock::new(Default::default);
    HASHER.hash_one((kind as u8, name))
}

/// The facts of one cluster's instances (local ids), with the tag look-ups
/// `permitted_instances` needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterFacts {
    /// The inventory these facts were built from (with its tag prefix and GWM id map),
    /// when built from one alone: the key under which a later build may reuse them.
    source: Option<Arc<ClusterInventory>>,
    pub(crate) instances: Vec<InstanceFacts>,
    pub(crate) by_name: HashMap<Arc<str>, u32>,
    /// Instances with an owner or permission tag naming a user (sorted local ids).
    pub(crate) tagged_users: HashMap<Box<str>, Vec<u32>>,
    /// Instances with an owner or permission tag naming a group (sorted local ids).
    pub(crate) tagged_groups: HashMap<Box<str>, Vec<u32>>,
    /// [`subject_key`] of every subject in `tagged_users` and `tagged_groups`: computed
    /// once per segment, so the index's fleet-wide table costs no hashing of names.
    pub(crate) subject_keys: Vec<u64>,
}

/// The facts of a cluster no inventory describes (one only named by a binding or a role).
pub(crate) fn empty() -> Arc<ClusterFacts> {
    // One shared value: such clusters come back on every build.
    static EMPTY: LazyLock<Arc<ClusterFacts>> = LazyLock::new(Arc::default);
    EMPTY.clone()
}

impl ClusterFacts {
    /// Every instance of `inventory`, its tags read as the inventory says.
    pub(crate) fn from_inventory(inventory: &Arc<ClusterInventory>) -> Self {
        let mut facts = Self::default();
        facts.instances.reserve(inventory.instances.len());
        let reader = inventory.reader();
        for i in &inventory.instances {
            facts.add(&i.name, &i.tags, reader);
        }
        facts.index_tags();
        facts.source = Some(inventory.clone());
        facts
    }

    /// Whether these facts are exactly what [`Self::from_inventory`] would build now.
    pub(crate) fn built_from(&self, inventory: &Arc<ClusterInventory>) -> bool {
        self.source.as_ref().is_some_and(|i| Arc::ptr_eq(i, inventory))
    }

    pub(crate) fn len(&self) -> u32 {
        self.instances.len() as u32
    }

    /// Adds one instance with its Ganeti tags (merged into an instance of the same name).
    /// The tag look-ups are stale until [`Self::index_tags`].
    pub(crate) fn add(&mut self, name: &str, tag_list: &[String], reader: tags::Reader<'_>) {
        self.source = None;
        let id = match self.by_name.get(name) {
            Some(&id) => id,
            None => {
                let name: Arc<str> = name.into();
                let id = self.len();
                self.by_name.insert(name.clone(), id);
                self.instances.push(InstanceFacts::named(name));
                id
            }
        };
        let facts = &mut self.instances[id as usize];
        facts.in_inventory = true;
        for tag in tag_list {
            match reader.parse(tag) {
                Some(ParsedTag::GwmGrant { perm, subject }) => facts.grants.push(TagGrant {
                    tag: tag.as_str().into(),
                    subject,
                    perm,
                    rights: perm.vm_rights().iter().fold(0, |m, r| m | vm_bit(*r)),
                }),
                Some(ParsedTag::Owner(s) | ParsedTag::GanetimgrOwner(s)) => {
                    facts.owners.push((s, tag.as_str().into()))
                }
                Some(ParsedTag::AdminLock) => facts.locked = true,
                Some(ParsedTag::Isolate) => facts.isolated = true,
                // An id no map names grants nothing; the rest has no bearing on rights.
                Some(
                    ParsedTag::GwmId { .. }
                    | ParsedTag::NeedsReboot
                    | ParsedTag::WhitelistIp(_)
                    | ParsedTag::Other,
                )
                | None => {}
            }
        }
    }

    /// Per subject, the instances whose tags name it: where a principal's tag grants and
    /// `Own` scopes can reach (see `permitted_instances`).
    pub(crate) fn index_tags(&mut self) {
        self.tagged_users.clear();
        self.tagged_groups.clear();
        for (id, f) in self.instances.iter().enumerate() {
            let id = id as u32;
            let named = f
                .owners
                .iter()
                .map(|(s, _)| s)
                .chain(f.grants.iter().map(|g| &g.subject));
            for s in named {
                let map = match s.kind {
                    SubjectKind::User => &mut self.tagged_users,
                    SubjectKind::Group => &mut self.tagged_groups,
                };
                // Look up before inserting: most subjects name many instances.
                match map.get_mut(s.name.as_str()) {
                    Some(list) if list.last() == Some(&id) => {}
                    Some(list) => list.push(id),
                    None => {
                        map.insert(s.name.as_str().into(), vec![id]);
                    }
                }
            }
        }
        let users = self
            .tagged_users
            .keys()
            .map(|n| subject_key(SubjectKind::User, n));
        let groups = self
            .tagged_groups
            .keys()
            .map(|n| subject_key(SubjectKind::Group, n));
        self.subject_keys = users.chain(groups).collect();
    }
}

#[cfg(test)]
mod tests {
    use crate::api::binding::RoleBindingSpec;
    use crate::api::common::{InstanceRef, Subject};
    use crate::api::role::{RoleSpec, Scope, ScopeKind, VmRight};
    use crate::authz::{ADVANCED_USER, AuthzIndex, Principal, Request, USER};
    use crate::inventory::{ClusterInventory, Instance};
    use std::sync::Arc;

    const P: &str = crate::tags::DEFAULT_PREFIX;

    fn inventory(cluster: &str, vms: &[(&str, &[&str])]) -> Arc<ClusterInventory> {
        Arc::new(ClusterInventory {
            cluster: cluster.into(),
            instances: vms
                .iter()
                .map(|(name, tags)| Instance {
                    name: name.to_string(),
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
            tag_prefix: P.into(),
            ..Default::default()
        })
    }

    fn iref(cluster: &str, name: &str) -> InstanceRef {
        InstanceRef {
            cluster: cluster.into(),
            name: name.into(),
        }
    }

    fn build(inventories: &[Arc<ClusterInventory>], previous: Option<&AuthzIndex>) -> AuthzIndex {
        let listed = RoleSpec {
            scope: Scope {
                kind: ScopeKind::Instances,
                clusters: vec![],
                instances: vec![iref("c2", "b1"), iref("c3", "ghost")],
            },
            ..crate::authz::preconfigured_roles()
                .into_iter()
                .find(|r| r.metadata.name.as_deref() == Some(USER))
                .unwrap()
                .spec
        };
        let mut narrowed = RoleBindingSpec {
            role_ref: ADVANCED_USER.into(),
            subjects: vec![Subject::group("ops")],
            clusters: vec!["c1".into(), "nowhere".into()],
            instances: vec![iref("c2", "b2"), iref("c2", "gone")],
        };
        let mut b = AuthzIndex::builder()
            .role("listed", &listed)
            .binding("ops-adv", &narrowed)
            .binding(
                "erin-user",
                &RoleBindingSpec {
                    role_ref: USER.into(),
                    subjects: vec![Subject::user("erin")],
                    clusters: vec![],
                    instances: vec![],
                },
            );
        narrowed.role_ref = "listed".into();
        narrowed.clusters.clear();
        b = b.binding("ops-listed", &narrowed);
        if let Some(previous) = previous {
            b = b.reusing(previous);
        }
        for inv in inventories {
            b = b.shared_cluster(inv);
        }
        b.build()
    }

    /// Every decision on every instance (and on ones no index knows), per principal.
    fn decisions(ix: &AuthzIndex) -> Vec<String> {
        let ops = vec!["ops".to_string()];
        let principals = [Principal::new("erin", &[]), Principal::new("dan", &ops)];
        let vms = [
            ("c1", "a1"),
            ("c1", "a2"),
            ("c2", "b1"),
            ("c2", "b2"),
            ("c2", "b3"),
            ("c2", "gone"),
            ("c3", "c1"),
            ("c3", "ghost"),
        ];
        let mut out = Vec::new();
        for p in &principals {
            for &(cluster, instance) in &vms {
                for right in VmRight::ALL {
                    let request = Request::Vm {
                        cluster,
                        instance,
                        right: *right,
                    };
                    let d = ix.decide(p, &request);
                    out.push(format!("{}: {}", p.user, ix.describe(&d)));
                }
            }
            for right in VmRight::ALL {
                out.push(format!("{:?}", ix.permitted_instances(p, *right)));
            }
        }
        for c in ["c1", "c2", "c3"] {
            out.push(format!("{:?}", ix.listed_grants(c)));
        }
        out
    }

    #[test]
    fn a_rebuild_after_one_clusters_change_reuses_the_others_and_decides_alike() {
        let c1 = inventory("c1", &[("a1", &["ganetimgr:user:erin"]), ("a2", &[])]);
        let c2 = inventory(
            "c2",
            &[("b1", &["ganetimgr:group:ops"]), ("b2", &["ganetimgr:adminlock"])],
        );
        let c3 = inventory("c3", &[("c1", &["GANETI_WEB_MANAGER:admin:U:erin"])]);
        let first = build(&[c1.clone(), c2, c3.clone()], None);
        // c2 synced: a VM gone, one new, tags changed.
        let c2 = inventory(
            "c2",
            &[
                ("b2", &["ganetimgr:user:erin"]),
                ("b3", &["GANETI_WEB_MANAGER:owner:U:erin"]),
            ],
        );
        let now = [c1, c2, c3];
        let next = build(&now, Some(&first));
        let shared = |c: u32| {
            Arc::ptr_eq(
                &first.segments[c as usize].facts,
                &next.segments[c as usize].facts,
            )
        };
        let id = |ix: &AuthzIndex, c: &str| ix.clusters[c].id;
        assert_eq!((id(&first, "c1"), id(&next, "c1")), (0, 0));
        assert!(shared(0) && shared(2), "unchanged clusters' facts are shared");
        assert!(!shared(1), "the synced cluster's are rebuilt");
        let scratch = build(&now, None);
        assert!(!Arc::ptr_eq(&scratch.segments[0].facts, &next.segments[0].facts));
        assert_eq!(decisions(&next), decisions(&scratch));
        assert_ne!(decisions(&next), decisions(&first), "the change shows");
        // A binding's instance missing from the inventory lives in the overlay.
        assert!(next.instance_id_of("c2", "gone").unwrap() >= next.overlay_base);
        assert!(!next.find_instance("c2", "gone").unwrap().in_inventory);
    }
}
