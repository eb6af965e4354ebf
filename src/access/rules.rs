//! The authorization snapshot: Roles, RoleBindings and UserProfiles from watched caches
//! (kube-runtime reflectors), and the index of every cluster's inventory built from
//! them. A task rebuilds it when a watch or the inventory changes and publishes it on a
//! `watch` channel, so a reader (an API request, the tag sync) takes the current one
//! with no list and no build of its own.
//!
//! It is what the service decides on everywhere freshness within a watch event is good
//! enough: listings, views, console tickets, the tag sync. Two decisions read the API
//! server instead, because their point is to be fresh: the admission webhook (it judges
//! a write against the roles as they are, not as a cache last saw them) and an approval
//! (a quota and rights check that creates a VM). Every replica runs the watches, leader
//! or not.

use super::RuleSet;
use crate::api::profile::UserProfile;
use crate::api::{Role, RoleBinding};
use crate::authz::AuthzIndex;
use crate::inventory::{ClusterInventory, Inventory};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a rebuild waits after a change for more: a burst of watch events (a
/// GitOps sync applying 100 bindings) makes one index, not 100.
const SETTLE: Duration = Duration::from_millis(20);

/// After a build of duration `d`, the next waits until `BUILD_PAUSE_FACTOR × d` has
/// passed: the builds keep at most a fifth of one core busy however large the fleet.
/// With 50 clusters of 2,000 VMs each read every 30 s, a build takes a few hundred ms
/// and every cluster read would otherwise make one; small fleets build in
/// milliseconds and wait only [`SETTLE`].
pub const BUILD_PAUSE_FACTOR: u32 = 4;

/// The earliest a rebuild may start after one that took `build`, counted from its end.
pub fn pause_after(build: Duration) -> Duration {
    (build * BUILD_PAUSE_FACTOR).max(SETTLE)
}

/// Roles, bindings and profiles at one moment, with the index over the inventories of
/// that moment.
pub struct Snapshot {
    pub roles: Vec<Arc<Role>>,
    pub bindings: Vec<Arc<RoleBinding>>,
    pub profiles: Vec<Arc<UserProfile>>,
    /// The groups each user's profiles add (set only by holders of `system.users`).
    profile_groups: HashMap<String, Vec<String>>,
    /// The inventories the index was built from.
    inventories: Vec<Arc<ClusterInventory>>,
    pub index: AuthzIndex,
    /// Whether every watch had listed once (before, an empty list means "unknown").
    pub listed: bool,
}

impl Snapshot {
    /// A snapshot of fixed contents (tests, benchmarks, `explain`).
    pub fn build(
        roles: Vec<Arc<Role>>,
        bindings: Vec<Arc<RoleBinding>>,
        profiles: Vec<Arc<UserProfile>>,
        inventories: Vec<Arc<ClusterInventory>>,
    ) -> Self {
        Self::build_after(None, roles, bindings, profiles, inventories)
    }

    /// [`Self::build`], taking from `previous` the instance facts of every inventory it
    /// indexed too (the same `Arc`): after one cluster's sync, only that cluster's VMs
    /// are read again, and the clusters' facts are shared, not copied.
    pub fn build_after(
        previous: Option<&Snapshot>,
        roles: Vec<Arc<Role>>,
        bindings: Vec<Arc<RoleBinding>>,
        profiles: Vec<Arc<UserProfile>>,
        inventories: Vec<Arc<ClusterInventory>>,
    ) -> Self {
        let mut builder = AuthzIndex::builder()
            .roles(roles.iter().map(|r| &**r))
            .bindings(bindings.iter().map(|b| &**b));
        if let Some(previous) = previous {
            builder = builder.reusing(&previous.index);
        }
        for inv in &inventories {
            builder = builder.shared_cluster(inv);
        }
        let index = builder.build();
        let mut profile_groups: HashMap<String, Vec<String>> = HashMap::new();
        for p in &profiles {
            let groups = profile_groups.entry(p.spec.username.clone()).or_default();
            for g in &p.spec.groups {
                if !groups.contains(g) {
                    groups.push(g.clone());
                }
            }
        }
        Self {
            roles,
            bindings,
            profiles,
            profile_groups,
            inventories,
            index,
            listed: true,
        }
    }

    fn empty() -> Self {
        Self {
            listed: false,
            ..Self::build(Vec::new(), Vec::new(), Vec::new(), Vec::new())
        }
    }

    pub fn rules(&self) -> RuleSet<'_> {
        RuleSet {
            roles: &self.roles,
            bindings: &self.bindings,
        }
    }

    /// A user's groups as the service counts them everywhere: those Kubernetes
    /// authenticated plus those the user's `UserProfile`s list, without repeats.
    pub fn effective_groups(&self, user: &str, authenticated: &[String]) -> Vec<String> {
        let mut groups = authenticated.to_vec();
        for g in self.profile_groups.get(user).into_iter().flatten() {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        groups
    }

    /// The inventory of `cluster` the index was built from.
    pub fn inventory(&self, cluster: &str) -> Option<&Arc<ClusterInventory>> {
        self.inventories.iter().find(|i| i.cluster == cluster)
    }

    pub fn inventories(&self) -> &[Arc<ClusterInventory>] {
        &self.inventories
    }
}

/// The current snapshot, kept by watches; cheap to clone.
#[derive(Clone)]
pub struct Rules {
    current: watch::Receiver<Arc<Snapshot>>,
}

impl Rules {
    /// Starts the watches and the task that rebuilds the snapshot (they run until the
    /// process ends).
    pub fn watch(client: kube::Client, inventory: Inventory) -> Self {
        let changed = Arc::new(Notify::new());
        let roles = reflect(Api::<Role>::all(client.clone()), changed.clone());
        let bindings = reflect(Api::<RoleBinding>::all(client.clone()), changed.clone());
        let profiles = reflect(Api::<UserProfile>::all(client), changed.clone());
        let (publish, current) = watch::channel(Arc::new(Snapshot::empty()));
        tokio::spawn(async move {
            // Nothing is published before every first list: an empty binding list read
            // as "nobody may do anything" would hide every VM from every user.
            for ready in [
                roles.wait_until_ready().await,
                bindings.wait_until_ready().await,
                profiles.wait_until_ready().await,
            ] {
                if ready.is_err() {
                    return;
                }
            }
            let mut inventory_changes = inventory.changes();
            loop {
                let started = tokio::time::Instant::now();
                let previous = publish.borrow().clone();
                let snapshot = Snapshot::build_after(
                    Some(&previous),
                    roles.state(),
                    bindings.state(),
                    profiles.state(),
                    inventory.all(),
                );
                drop(previous);
                let built = tokio::time::Instant::now();
                if publish.send(Arc::new(snapshot)).is_err() {
                    return;
                }
                tokio::select! {
                    _ = changed.notified() => {}
                    r = inventory_changes.changed() => if r.is_err() { return },
                }
                let earliest = built + pause_after(built - started);
                tokio::time::sleep_until(earliest.max(tokio::time::Instant::now() + SETTLE)).await;
                inventory_changes.mark_unchanged();
            }
        });
        Self { current }
    }

    /// Rules that never change (tests and benchmarks).
    pub fn fixed(snapshot: Snapshot) -> Self {
        let (publish, current) = watch::channel(Arc::new(snapshot));
        // Kept open, so readers never see a closed channel.
        std::mem::forget(publish);
        Self { current }
    }

    /// The snapshot of this moment.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    /// Wakes on every new snapshot (the tag sync acts on each).
    pub fn changes(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.clone()
    }

    /// Whether every first list is in, waiting up to 10 s for it.
    pub async fn ready(&self) -> bool {
        let mut rx = self.current.clone();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.listed))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// A reflector for `K` whose every event wakes `changed`.
fn reflect<K>(api: Api<K>, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let events =
        reflector::reflector(writer, watcher::watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(events.for_each(move |event| {
        if let Err(e) = event {
            tracing::debug!(error = %e, kind = %K::kind(&Default::default()), "watch error");
        } else {
            changed.notify_one();
        }
        futures::future::ready(())
    }));
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, user: &str, groups: &[&str]) -> Arc<UserProfile> {
        Arc::new(UserProfile::for_tests(name, user, groups))
    }

    #[test]
    fn a_users_groups_are_the_authenticated_ones_plus_every_profiles_without_repeats() {
        let inv = Arc::new(ClusterInventory {
            cluster: "lab".into(),
            ..Default::default()
        });
        let snapshot = Snapshot::build(
            vec![],
            vec![],
            vec![
                profile("alice", "alice", &["ops", "dev"]),
                profile("alice-2", "alice", &["dev", "db"]),
                profile("bob", "bob", &["admins"]),
            ],
            vec![inv.clone()],
        );
        assert_eq!(
            snapshot.effective_groups("alice", &["system:authenticated".into(), "ops".into()]),
            vec!["system:authenticated", "ops", "dev", "db"]
        );
        assert_eq!(snapshot.effective_groups("carol", &["x".into()]), vec!["x"]);
        assert!(
            Arc::ptr_eq(snapshot.inventory("lab").unwrap(), &inv),
            "the very inventory indexed"
        );
        assert!(snapshot.inventory("other").is_none());
        assert!(snapshot.listed && !Snapshot::empty().listed);
    }

    #[test]
    fn a_slow_build_spaces_the_next_and_a_quick_one_waits_only_to_settle() {
        assert_eq!(pause_after(Duration::from_millis(1)), SETTLE);
        assert_eq!(pause_after(Duration::ZERO), SETTLE);
        assert_eq!(
            pause_after(Duration::from_millis(300)),
            Duration::from_millis(1200)
        );
        // Building takes at most 1 / (1 + factor) of the time, whatever the build costs.
        let build = Duration::from_millis(700);
        let cycle = build + pause_after(build);
        assert!(build.as_secs_f64() / cycle.as_secs_f64() <= 1.0 / (1.0 + BUILD_PAUSE_FACTOR as f64) + 1e-9);
    }

    #[tokio::test]
    async fn fixed_rules_are_ready_and_current() {
        let rules = Rules::fixed(Snapshot::build(
            vec![],
            vec![],
            vec![profile("p", "u", &["g"])],
            vec![],
        ));
        assert!(rules.ready().await);
        assert_eq!(rules.current().effective_groups("u", &[]), vec!["g"]);
    }
}
