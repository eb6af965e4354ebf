//! Who receives a Notification: selectors (users, groups, instances, clusters) resolved
//! against the UserProfiles and the inventory into one entry per address, each with
//! the instances that concern that recipient. Pure.

use crate::api::common::{InstanceRef, Subject, SubjectKind};
use crate::api::notification::{Recipients, SkippedRecipient};
use crate::api::profile::UserProfile;
use crate::inventory::ClusterInventory;
use crate::mail::address_for;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// An instance, as the recipients and the archive name it: GanetiCluster and name.
pub type InstanceKey = (String, String);

/// `cluster/name`, the archive's spelling of an instance.
pub fn instance_label((cluster, name): &InstanceKey) -> String {
    format!("{cluster}/{name}")
}

/// The reverse of [`instance_label`] (cluster names cannot contain `/`).
pub fn parse_instance_label(label: &str) -> Option<InstanceKey> {
    let (cluster, name) = label.split_once('/')?;
    Some((cluster.to_string(), name.to_string()))
}

/// One address to mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub address: String,
    /// The user the address belongs to (the first, by name, when users share one).
    pub user: String,
    /// The recipient's affected instances, sorted.
    pub instances: Vec<InstanceKey>,
}

/// Every address with its instances, and what was named but yields no mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Sorted by address.
    pub recipients: Vec<Resolved>,
    pub skipped: Vec<SkippedRecipient>,
}

/// The facts resolution reads: profiles by username, group members, owners of VMs.
pub struct Directory<'a> {
    profiles: HashMap<&'a str, &'a UserProfile>,
    members: HashMap<&'a str, BTreeSet<&'a str>>,
    clusters: HashMap<&'a str, &'a ClusterInventory>,
    /// Instances by owner, across every cluster.
    owned: HashMap<Subject, BTreeSet<InstanceKey>>,
}

impl<'a> Directory<'a> {
    pub fn new(profiles: &'a [Arc<UserProfile>], inventories: &'a [Arc<ClusterInventory>]) -> Self {
        let mut by_user: HashMap<&str, &UserProfile> = HashMap::new();
        let mut members: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for p in profiles {
            // Two profiles for one username: the first by name wins (admission keeps
            // usernames to their owners; this only makes the choice deterministic).
            let user = p.spec.username.as_str();
            let keep = by_user
                .get(user)
                .is_none_or(|old| old.metadata.name > p.metadata.name);
            if keep {
                by_user.insert(user, p);
            }
            for g in &p.spec.groups {
                members.entry(g.as_str()).or_default().insert(user);
            }
        }
        let mut owned: HashMap<Subject, BTreeSet<InstanceKey>> = HashMap::new();
        let mut clusters = HashMap::new();
        for inv in inventories {
            clusters.insert(inv.cluster.as_str(), &**inv);
            for i in &inv.instances {
                if let Some(owner) = inv.owner_of(i) {
                    owned
                        .entry(owner)
                        .or_default()
                        .insert((inv.cluster.clone(), i.name.clone()));
                }
            }
        }
        Self {
            profiles: by_user,
            members,
            clusters,
            owned,
        }
    }

    pub fn profile(&self, user: &str) -> Option<&'a UserProfile> {
        self.profiles.get(user).copied()
    }

    /// Members of a group: users whose profile lists it.
    fn members(&self, group: &str) -> impl Iterator<Item = &'a str> + '_ {
        self.members.get(group).into_iter().flatten().copied()
    }

    /// A user's VMs: owned by the user or by one of the groups in the user's profile.
    fn vms_of(&self, user: &str) -> BTreeSet<InstanceKey> {
        let mut out = self.owned.get(&Subject::user(user)).cloned().unwrap_or_default();
        if let Some(p) = self.profile(user) {
            for g in &p.spec.groups {
                if let Some(vms) = self.owned.get(&Subject::group(g.as_str())) {
                    out.extend(vms.iter().cloned());
                }
            }
        }
        out
    }

    /// The owner of a named instance, or why it has none to mail.
    fn owner(&self, cluster: &str, name: &str) -> Result<Subject, String> {
        let inv = self
            .clusters
            .get(cluster)
            .ok_or_else(|| format!("cluster {cluster} has not been read"))?;
        let i = inv.instance(name).ok_or("no such instance on that cluster")?;
        inv.owner_of(i).ok_or_else(|| "has no owner tag".into())
    }

    /// Clusters a selector names that have no inventory yet (never read).
    pub fn unread_clusters(&self, recipients: &Recipients) -> Vec<String> {
        let named = recipients
            .clusters
            .iter()
            .chain(recipients.instances.iter().map(|i| &i.cluster));
        let mut missing: Vec<String> = named
            .filter(|c| !self.clusters.contains_key(c.as_str()))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }
}

fn skip(name: String, reason: impl Into<String>) -> SkippedRecipient {
    SkippedRecipient {
        name,
        reason: reason.into(),
    }
}

/// Resolves the selectors. Clusters without an inventory count as having no VMs (the
/// caller waits for them first: see [`Directory::unread_clusters`]).
pub fn resolve(recipients: &Recipients, dir: &Directory<'_>, allow_unverified: bool) -> Resolution {
    // Users, each with the instances that concern them.
    let mut affected: BTreeMap<String, BTreeSet<InstanceKey>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut add_owner =
        |owner: &Subject, key: &InstanceKey, skipped: &mut Vec<SkippedRecipient>| match owner.kind {
            SubjectKind::User => {
                affected
                    .entry(owner.name.clone())
                    .or_default()
                    .insert(key.clone());
            }
            SubjectKind::Group => {
                let mut any = false;
                for m in dir.members(&owner.name) {
                    any = true;
                    affected.entry(m.to_string()).or_default().insert(key.clone());
                }
                if !any {
                    skipped.push(skip(
                        format!("instance {}", instance_label(key)),
                        format!(
                            "owned by group {}, and no UserProfile lists that group",
                            owner.name
                        ),
                    ));
                }
            }
        };

    for InstanceRef { cluster, name } in &recipients.instances {
        let key = (cluster.clone(), name.clone());
        match dir.owner(cluster, name) {
            Ok(owner) => add_owner(&owner, &key, &mut skipped),
            Err(reason) => skipped.push(skip(format!("instance {}", instance_label(&key)), reason)),
        }
    }

    for cluster in &recipients.clusters {
        let Some(inv) = dir.clusters.get(cluster.as_str()) else {
            skipped.push(skip(
                format!("cluster {cluster}"),
                "has not been read (does the GanetiCluster exist?)",
            ));
            continue;
        };
        let mut ownerless = 0;
        for i in &inv.instances {
            let key = (cluster.clone(), i.name.clone());
            match inv.owner_of(i) {
                Some(owner) => add_owner(&owner, &key, &mut skipped),
                None => ownerless += 1,
            }
        }
        if ownerless > 0 {
            skipped.push(skip(
                format!("cluster {cluster}"),
                format!("{ownerless} VM(s) without an owner tag"),
            ));
        }
    }

    // Named users get the mail even without VMs; their instances are all of theirs.
    let mut named: BTreeSet<String> = recipients.users.iter().cloned().collect();
    for g in &recipients.groups {
        let mut any = false;
        for m in dir.members(g) {
            any = true;
            named.insert(m.to_string());
        }
        if !any {
            skipped.push(skip(format!("group {g}"), "no UserProfile lists this group"));
        }
    }
    for u in named {
        let vms = dir.vms_of(&u);
        affected.entry(u).or_default().extend(vms);
    }

    // One entry per address; users sharing an address share one mail.
    let mut by_address: BTreeMap<String, Resolved> = BTreeMap::new();
    for (user, instances) in affected {
        let Some(address) = address_for(&user, dir.profile(&user), allow_unverified) else {
            let reason = match dir.profile(&user) {
                Some(_) if allow_unverified => "the profile's address is not usable",
                Some(_) => "the profile's address is not verified yet",
                None => "no UserProfile, and the username is not a mail address",
            };
            skipped.push(skip(format!("user {user}"), reason));
            continue;
        };
        let entry = by_address
            .entry(address.to_ascii_lowercase())
            .or_insert_with(|| Resolved {
                address: address.clone(),
                user: user.clone(),
                instances: Vec::new(),
            });
        entry.instances.extend(instances);
    }
    let mut recipients: Vec<Resolved> = by_address.into_values().collect();
    for r in &mut recipients {
        r.instances.sort();
        r.instances.dedup();
    }
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    skipped.dedup();
    Resolution { recipients, skipped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::profile::{UserProfileSpec, UserProfileStatus};
    use crate::inventory::Instance;
    use crate::tags::{DEFAULT_PREFIX, format_owner};

    fn profile(user: &str, email: &str, verified: bool, groups: &[&str]) -> Arc<UserProfile> {
        let mut p = UserProfile::new(
            user,
            UserProfileSpec {
                username: user.into(),
                full_name: None,
                email: email.into(),
                ssh_keys: vec![],
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        );
        p.status = Some(UserProfileStatus {
            verified_email: verified.then(|| email.to_string()),
            ..Default::default()
        });
        Arc::new(p)
    }

    fn vm(name: &str, owner: Option<Subject>) -> Instance {
        Instance {
            name: name.into(),
            tags: owner
                .map(|o| vec![format_owner(DEFAULT_PREFIX, &o).unwrap()])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn cluster(name: &str, instances: Vec<Instance>) -> Arc<ClusterInventory> {
        Arc::new(ClusterInventory {
            cluster: name.into(),
            instances,
            tag_prefix: DEFAULT_PREFIX.into(),
            reachable: true,
            ..Default::default()
        })
    }

    fn world() -> (Vec<Arc<UserProfile>>, Vec<Arc<ClusterInventory>>) {
        let profiles = vec![
            profile("alice", "alice@example.org", true, &["ops"]),
            profile("bob", "bob@example.org", true, &[]),
            profile("carol", "carol@example.org", false, &["ops"]),
            profile("dave", "dave@example.org", true, &["ops"]),
        ];
        let inventories = vec![
            cluster(
                "c1",
                vec![
                    vm("a1.example.org", Some(Subject::user("alice"))),
                    vm("b1.example.org", Some(Subject::user("bob"))),
                    vm("ops1.example.org", Some(Subject::group("ops"))),
                    vm("orphan.example.org", None),
                ],
            ),
            cluster(
                "c2",
                vec![
                    vm("a2.example.org", Some(Subject::user("alice"))),
                    vm("x2.example.org", Some(Subject::user("xavier@example.org"))),
                ],
            ),
        ];
        (profiles, inventories)
    }

    /// `recipients` resolved in [`world`], verified addresses only.
    fn resolved(recipients: Recipients) -> Resolution {
        let (p, i) = world();
        resolve(&recipients, &Directory::new(&p, &i), false)
    }

    fn keys(v: &[(&str, &str)]) -> Vec<InstanceKey> {
        v.iter().map(|(c, n)| (c.to_string(), n.to_string())).collect()
    }

    #[test]
    fn a_user_gets_all_their_vms_including_their_groups() {
        let r = resolved(Recipients {
            users: vec!["alice".into()],
            ..Default::default()
        });
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.recipients[0].address, "alice@example.org");
        assert_eq!(
            r.recipients[0].instances,
            keys(&[
                ("c1", "a1.example.org"),
                ("c1", "ops1.example.org"),
                ("c2", "a2.example.org")
            ])
        );
    }

    #[test]
    fn a_cluster_reaches_the_owners_of_its_vms_with_only_that_clusters_vms() {
        let r = resolved(Recipients {
            clusters: vec!["c1".into()],
            ..Default::default()
        });
        let got: Vec<_> = r
            .recipients
            .iter()
            .map(|x| (x.address.as_str(), x.instances.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "alice@example.org",
                    keys(&[("c1", "a1.example.org"), ("c1", "ops1.example.org")])
                ),
                ("bob@example.org", keys(&[("c1", "b1.example.org")])),
                ("dave@example.org", keys(&[("c1", "ops1.example.org")])),
            ]
        );
        // carol is in ops but unverified; the orphan VM is reported.
        assert!(
            r.skipped
                .iter()
                .any(|s| s.name == "user carol" && s.reason.contains("not verified"))
        );
        assert!(
            r.skipped
                .iter()
                .any(|s| s.name == "cluster c1" && s.reason.contains("1 VM"))
        );
    }

    #[test]
    fn instances_reach_their_owners_and_bare_address_usernames() {
        let r = resolved(Recipients {
            instances: vec![
                InstanceRef {
                    cluster: "c2".into(),
                    name: "x2.example.org".into(),
                },
                InstanceRef {
                    cluster: "c1".into(),
                    name: "missing.example.org".into(),
                },
                InstanceRef {
                    cluster: "c1".into(),
                    name: "orphan.example.org".into(),
                },
            ],
            ..Default::default()
        });
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.recipients[0].address, "xavier@example.org");
        assert_eq!(r.recipients[0].instances, keys(&[("c2", "x2.example.org")]));
        assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
    }

    #[test]
    fn a_user_named_directly_and_through_a_group_gets_one_mail() {
        let r = resolved(Recipients {
            users: vec!["alice".into(), "alice".into()],
            groups: vec!["ops".into()],
            clusters: vec!["c2".into()],
            ..Default::default()
        });
        let addresses: Vec<_> = r.recipients.iter().map(|x| x.address.as_str()).collect();
        assert_eq!(
            addresses,
            vec!["alice@example.org", "dave@example.org", "xavier@example.org"]
        );
    }

    #[test]
    fn unverified_addresses_are_used_only_when_allowed() {
        let (p, i) = world();
        let dir = Directory::new(&p, &i);
        let sel = Recipients {
            users: vec!["carol".into(), "nobody".into()],
            ..Default::default()
        };
        let r = resolve(&sel, &dir, false);
        assert!(r.recipients.is_empty());
        assert_eq!(r.skipped.len(), 2);
        let r = resolve(&sel, &dir, true);
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.recipients[0].address, "carol@example.org");
    }

    #[test]
    fn users_sharing_an_address_share_one_mail() {
        let profiles = vec![
            profile("eve", "Team@example.org", true, &[]),
            profile("fred", "team@example.org", true, &[]),
        ];
        let inventories = vec![cluster(
            "c1",
            vec![
                vm("e.example.org", Some(Subject::user("eve"))),
                vm("f.example.org", Some(Subject::user("fred"))),
            ],
        )];
        let dir = Directory::new(&profiles, &inventories);
        let r = resolve(
            &Recipients {
                clusters: vec!["c1".into()],
                ..Default::default()
            },
            &dir,
            false,
        );
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.recipients[0].user, "eve");
        assert_eq!(r.recipients[0].instances.len(), 2);
    }

    #[test]
    fn unread_clusters_are_reported_for_the_caller_to_wait_on() {
        let (p, i) = world();
        let dir = Directory::new(&p, &i);
        let sel = Recipients {
            clusters: vec!["c9".into(), "c1".into()],
            instances: vec![InstanceRef {
                cluster: "c8".into(),
                name: "x.example.org".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            dir.unread_clusters(&sel),
            vec!["c8".to_string(), "c9".to_string()]
        );
    }

    #[test]
    fn labels_round_trip() {
        let k = ("c1".to_string(), "vm.example.org".to_string());
        assert_eq!(parse_instance_label(&instance_label(&k)), Some(k));
    }
}
