//! Roles and bindings from a watched cache (kube-runtime reflectors), and the
//! authorization index of the whole inventory built from them once per change, not
//! listed from the API server per request.

use super::RuleSet;
use crate::api::profile::UserProfile;
use crate::api::{Role, RoleBinding};
use crate::authz::AuthzIndex;
use crate::inventory::{ClusterInventory, Inventory};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::{Arc, Mutex};

/// What an index was built from: the stores' contents (by resource version) and the
/// inventory snapshots (by identity: a new read is a new `Arc`).
struct Built {
    roles: Vec<Option<String>>,
    bindings: Vec<Option<String>>,
    /// Held, so an address cannot be reused by a newer snapshot while compared.
    inventories: Vec<Arc<ClusterInventory>>,
}

impl PartialEq for Built {
    fn eq(&self, other: &Self) -> bool {
        self.roles == other.roles
            && self.bindings == other.bindings
            && self.inventories.len() == other.inventories.len()
            && self
                .inventories
                .iter()
                .zip(&other.inventories)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// The last index and what it was built from.
type Cached = (Built, Arc<AuthzIndex>);

/// The roles and bindings of this moment, kept by watches.
#[derive(Clone)]
pub struct Rules {
    roles: Store<Role>,
    bindings: Store<RoleBinding>,
    /// For the groups a profile adds to a user's authenticated ones.
    profiles: Store<UserProfile>,
    cache: Arc<Mutex<Option<Cached>>>,
}

impl Rules {
    /// Starts the watches (they run until the process ends).
    pub fn watch(client: kube::Client) -> Self {
        let (roles, roles_writer) = reflector::store::<Role>();
        let (bindings, bindings_writer) = reflector::store::<RoleBinding>();
        let role_events = reflector::reflector(
            roles_writer,
            watcher::watcher(Api::<Role>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff();
        let binding_events = reflector::reflector(
            bindings_writer,
            watcher::watcher(
                Api::<RoleBinding>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff();
        let (profiles, profiles_writer) = reflector::store::<UserProfile>();
        let profile_events = reflector::reflector(
            profiles_writer,
            watcher::watcher(Api::<UserProfile>::all(client), watcher::Config::default()),
        )
        .default_backoff();
        tokio::spawn(role_events.for_each(|_| async {}));
        tokio::spawn(binding_events.for_each(|_| async {}));
        tokio::spawn(profile_events.for_each(|_| async {}));
        Self {
            roles,
            bindings,
            profiles,
            cache: Default::default(),
        }
    }

    /// Whether every first list is in (before that an empty store means "unknown").
    pub async fn ready(&self) -> bool {
        let wait = async {
            self.roles.wait_until_ready().await.is_ok()
                && self.bindings.wait_until_ready().await.is_ok()
                && self.profiles.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .unwrap_or(false)
    }

    /// A user's groups as the service counts them everywhere: those Kubernetes
    /// authenticated plus those the user's `UserProfile` lists (set only by holders of
    /// `system.users`), without repeats.
    pub fn effective_groups(&self, user: &str, authenticated: &[String]) -> Vec<String> {
        let mut groups = authenticated.to_vec();
        for profile in self.profiles.state() {
            if profile.spec.username == user {
                for g in &profile.spec.groups {
                    if !groups.contains(g) {
                        groups.push(g.clone());
                    }
                }
            }
        }
        groups
    }

    /// The current roles and bindings, for one decision.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            roles: self.roles.state(),
            bindings: self.bindings.state(),
        }
    }

    /// The index over every cluster's inventory: rebuilt only when a role, binding or
    /// inventory snapshot changed since the last call.
    pub fn index(&self, inventory: &Inventory) -> Arc<AuthzIndex> {
        let snapshot = self.snapshot();
        let inventories = inventory.all();
        let version = |m: &kube::api::ObjectMeta| m.resource_version.clone();
        let versions = |metas: &mut dyn Iterator<Item = &kube::api::ObjectMeta>| {
            let mut v: Vec<Option<String>> = metas.map(version).collect();
            // A store's order is not stable.
            v.sort_unstable();
            v
        };
        let built = Built {
            roles: versions(&mut snapshot.roles.iter().map(|r| &r.metadata)),
            bindings: versions(&mut snapshot.bindings.iter().map(|b| &b.metadata)),
            inventories: inventories.clone(),
        };
        if let Some((key, index)) = &*self.cache.lock().expect("rules cache lock")
            && *key == built
        {
            return index.clone();
        }
        let mut builder = AuthzIndex::builder()
            .roles(snapshot.roles.iter().map(|r| &**r))
            .bindings(snapshot.bindings.iter().map(|b| &**b));
        for inv in &inventories {
            builder = builder.cluster(inv, &inv.tag_prefix);
        }
        let index = Arc::new(builder.build());
        *self.cache.lock().expect("rules cache lock") = Some((built, index.clone()));
        index
    }
}

/// Roles and bindings at one moment.
pub struct Snapshot {
    pub roles: Vec<Arc<Role>>,
    pub bindings: Vec<Arc<RoleBinding>>,
}

impl Snapshot {
    pub fn rules(&self) -> RuleSet<'_> {
        RuleSet {
            roles: &self.roles,
            bindings: &self.bindings,
        }
    }
}
