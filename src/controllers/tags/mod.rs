//! The tag-sync controller: keeps each Ganeti cluster's permission tags equal to what
//! RoleBindings imply, and reports on every RoleBinding and Role.
//!
//! It never writes an owner tag: that goes with the create request of an application's
//! VM (`controllers::application::plan::create_request`), once, on the instance its own
//! job makes. Owner tags are read (by the authorization engine), never written here.
//!
//! observe (Role and RoleBinding watches; the shared inventory) ->
//! plan (`plan::plan`, `status::*`, pure) -> apply (RAPI tag calls, ledger and status
//! patches, each only when something changed).
//!
//! # When it runs
//! One task, one cluster at a time (so two clusters never race on a binding's status). A
//! cluster is synced after each refresh of its inventory (a new snapshot in the shared
//! [`Inventory`](crate::inventory::Inventory)) and after any change of a Role or
//! RoleBinding; a failed sync is retried after [`RETRY`]. Nothing runs before
//! every watch has listed once: a pass over an empty binding list would remove every tag
//! the operator wrote. A cluster whose inventory is stale (unreachable) is not synced.
//!
//! # The ledger: which tags are the operator's
//! The operator removes only grant tags it added itself. It records them per cluster in
//! the ConfigMap `ganeti-tags.<cluster>` of its own namespace (the `--secrets-namespace`):
//! one key per instance, its Ganeti UUID, one tag per line. The UUID, not the name: a
//! renamed VM keeps its record (so the tags are still removed when their binding goes),
//! and a VM created later under a freed name inherits nothing. A ledger keyed by names
//! (written before UUID keys; the ConfigMap lacks the annotation [`LEDGER_KEYS`]) is
//! migrated on its first read: a key equal to a current instance's name becomes that
//! instance's UUID, any other key is dropped and never acted on.
//!
//! # Writes go by name, checked against the UUID
//! RAPI's tag calls take an instance name only (`OpTagsSet` has no UUID), and Ganeti
//! expands a unique prefix. So right before writing, the controller reads the instance by
//! its exact name (`GET /2/instances/<name>`): the write goes ahead only if the answer
//! has that very name and the planned UUID; otherwise (renamed, destroyed, the name now
//! another VM's) nothing is written on it this pass, and the next snapshot decides. The
//! same read gives the current tags, so a tag written by hand since the snapshot is
//! neither added again nor taken for the operator's. A ConfigMap, not a status field, because the
//! record must outlive the RoleBinding that caused a tag (deleting a binding is exactly when
//! its tags must go), survive restarts, and belong to no single binding (two bindings may
//! imply one tag). Tags are recorded *before* the add call and dropped after a successful
//! remove, so a crash in between leaves at worst a record of a tag that is not there,
//! which the next pass forgets. A tag that was already present when a binding first
//! implied it (written by hand or by another tool) is never recorded, so never removed.
//! The ledger of a deleted GanetiCluster is kept: the Ganeti cluster still carries the tags
//! if the GanetiCluster is created again.

pub mod plan;
pub mod status;

use super::{Context, Error, FIELD_MANAGER, observe};
use crate::api::{Role, RoleBinding, role::RoleSpec};
use crate::authz::{AuthzIndex, has_administrator_binding, preconfigured_roles};
use crate::inventory::ClusterInventory;
use crate::rapi::{RapiClient, RapiError};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use plan::{Ledger, Outcome, Overlay, StoredLedger};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CONTROLLER: &str = "tags";
/// How often the inventory is checked for new snapshots (and changes are acted on).
const TICK: Duration = Duration::from_millis(500);
/// When a failed sync or status write is tried again.
pub const RETRY: Duration = Duration::from_secs(10);
/// How long one tag job may take.
const JOB_DEADLINE: Duration = Duration::from_secs(60);
/// Instances written concurrently per cluster.
const CONCURRENCY: usize = 4;
/// Name prefix of the ledger ConfigMaps.
pub const LEDGER_PREFIX: &str = "ganeti-tags.";
/// Annotation of a ledger whose keys are instance UUIDs (value [`LEDGER_KEYS_UUID`]);
/// absent on a ledger keyed by instance names, which is migrated once.
pub const LEDGER_KEYS: &str = "ganeti.dev/ledger-keys";
pub const LEDGER_KEYS_UUID: &str = "instance-uuid";

/// Name of a cluster's ledger ConfigMap.
pub fn ledger_name(cluster: &str) -> String {
    format!("{LEDGER_PREFIX}{cluster}")
}

/// The ledger as a ConfigMap stores it.
pub fn parse_ledger(cm: &ConfigMap) -> StoredLedger {
    let uuid_keyed = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEDGER_KEYS))
        .is_some_and(|v| v == LEDGER_KEYS_UUID);
    let entries = cm
        .data
        .iter()
        .flatten()
        .map(|(instance, tags)| {
            let tags: BTreeSet<String> = tags
                .lines()
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            (instance.clone(), tags)
        })
        .filter(|(_, tags)| !tags.is_empty())
        .collect();
    StoredLedger { entries, uuid_keyed }
}

/// What the controller remembers of one cluster (in memory; the ledger is also stored).
#[derive(Default)]
struct ClusterSync {
    snapshot: Option<Arc<ClusterInventory>>,
    /// As stored; `None` until read from its ConfigMap (again after a failed write).
    ledger: Option<StoredLedger>,
    overlay: Overlay,
    report: Option<plan::ClusterReport>,
    /// Why the last sync did not happen or failed.
    failing: Option<String>,
    dirty: bool,
    retry_at: Option<Instant>,
}

struct TagSync {
    ctx: Arc<Context>,
    roles: Store<Role>,
    bindings: Store<RoleBinding>,
    clusters: BTreeMap<String, ClusterSync>,
    status_retry_at: Option<Instant>,
    administrator_bound: Option<bool>,
}

/// A reflector for `K`: its store, whether it has listed once, and its task.
struct Watch<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    listed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a reflector for `K`; every event sets `changed`.
fn watch<K>(api: Api<K>, changed: Arc<AtomicBool>) -> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let listed = Arc::new(AtomicBool::new(false));
    let done = listed.clone();
    let task = tokio::spawn(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .for_each(move |event| {
                match event {
                    Ok(e) => {
                        // The store holds the whole list once InitDone has passed through it.
                        if matches!(e, watcher::Event::InitDone) {
                            done.store(true, Ordering::SeqCst);
                        }
                        changed.store(true, Ordering::SeqCst);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, kind = %K::kind(&Default::default()), "watch error")
                    }
                }
                futures::future::ready(())
            }),
    );
    Watch { store, listed, task }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let changed = Arc::new(AtomicBool::new(true));
    let roles = watch(Api::<Role>::all(ctx.client.clone()), changed.clone());
    let bindings = watch(Api::<RoleBinding>::all(ctx.client.clone()), changed.clone());
    let flags = [roles.listed.clone(), bindings.listed.clone()];
    let tasks = [roles.task, bindings.task];
    let mut sync = TagSync {
        ctx,
        roles: roles.store,
        bindings: bindings.store,
        clusters: BTreeMap::new(),
        status_retry_at: None,
        administrator_bound: None,
    };
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut started = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if !started {
            if !flags.iter().all(|f| f.load(Ordering::SeqCst)) {
                continue;
            }
            tracing::info!("tag sync: roles and bindings listed; syncing");
            started = true;
        }
        sync.pass(changed.swap(false, Ordering::SeqCst)).await;
    }
    for t in tasks {
        t.abort();
    }
}

impl TagSync {
    async fn pass(&mut self, k8s_changed: bool) {
        let now = Instant::now();
        let inventories = self.ctx.inventory.all();
        self.clusters
            .retain(|name, _| inventories.iter().any(|i| &i.cluster == name));
        let mut any = k8s_changed || self.status_retry_at.is_some_and(|t| now >= t);
        for inv in inventories {
            let c = self.clusters.entry(inv.cluster.clone()).or_default();
            let fresh = c.snapshot.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &inv));
            if fresh {
                if inv.reachable {
                    plan::age_overlay(&mut c.overlay, &inv.instances);
                    c.dirty = true;
                } else if c.failing.is_none() {
                    c.failing = Some("the cluster is unreachable; its inventory is stale".into());
                    any = true;
                }
                c.snapshot = Some(inv);
            }
            if k8s_changed || c.retry_at.is_some_and(|t| now >= t) {
                c.dirty = true;
            }
        }
        let dirty: Vec<String> = self
            .clusters
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(n, _)| n.clone())
            .collect();
        for name in dirty {
            any = true;
            let started = Instant::now();
            let result = self.sync_cluster(&name).await;
            observe(&self.ctx.metrics, CONTROLLER, started, result.as_ref().err());
            let c = self.clusters.get_mut(&name).expect("listed above");
            c.dirty = false;
            if let Err(e) = result {
                tracing::warn!(cluster = %name, error = %e, "tag sync failed");
                c.failing = Some(e.to_string());
                c.retry_at = Some(Instant::now() + RETRY);
            }
        }
        if any {
            self.status_retry_at = match self.write_statuses().await {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "writing RoleBinding/Role status failed");
                    Some(Instant::now() + RETRY)
                }
            };
        }
    }

    /// Plans and applies one cluster's tags. `Err` for Kubernetes failures; RAPI
    /// failures are reported on the bindings and retried.
    async fn sync_cluster(&mut self, name: &str) -> Result<(), Error> {
        let ctx = self.ctx.clone();
        let roles = self.roles.state();
        let bindings = self.bindings.state();
        let c = self.clusters.get_mut(name).expect("cluster known");
        c.retry_at = None;
        let Some(inv) = c.snapshot.clone().filter(|i| i.reachable) else {
            return Ok(());
        };
        let Some(client) = ctx.clusters.client(name) else {
            c.failing = Some("no RAPI client yet (the cluster was not read)".into());
            c.retry_at = Some(Instant::now() + RETRY);
            return Ok(());
        };
        let stored = match c.ledger.take() {
            Some(l) => l,
            None => load_ledger(&ctx, name).await?,
        };
        c.ledger = Some(stored.clone());
        let ledger = plan::migrate(&stored, &inv.instances);

        let index = AuthzIndex::builder()
            .roles(roles.iter().map(|r| &**r))
            .bindings(bindings.iter().map(|b| &**b))
            .cluster(&inv, &inv.tag_prefix)
            .build();
        let specs = role_specs(&roles);
        let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for b in &bindings {
            let role = specs.get(b.spec.role_ref.as_str()).copied();
            let scoped = role
                .filter(|r| r.scope.kind == crate::api::role::ScopeKind::Instances)
                .map(|r| r.scope.instances.as_slice())
                .unwrap_or_default();
            let on_cluster: BTreeSet<String> = b
                .spec
                .instances
                .iter()
                .chain(scoped)
                .filter(|i| i.cluster == name)
                .map(|i| i.name.clone())
                .collect();
            if !on_cluster.is_empty() {
                listed.insert(b.name_any(), on_cluster);
            }
        }
        let make_plan = |overlay: &Overlay, held: &BTreeSet<String>| {
            plan::plan(&plan::Input {
                cluster: name,
                prefix: &inv.tag_prefix,
                index: &index,
                instances: &inv.instances,
                listed: &listed,
                ledger: &ledger,
                overlay,
                held,
            })
        };
        // Every write is planned from a snapshot up to one sync interval old and goes to
        // Ganeti by name: read each instance again by its exact name first. A name that
        // is no longer the planned VM's holds that VM's writes for this pass; the tags
        // read correct the plan (a tag written by hand meanwhile is neither added nor
        // recorded as the operator's). Re-planning may touch an instance not read yet
        // (never in practice): it is read in the next round.
        let mut held = BTreeSet::new();
        let mut checked = BTreeSet::new();
        let mut planned = make_plan(&c.overlay, &held);
        loop {
            let unchecked: Vec<&plan::Write> = planned
                .writes
                .iter()
                .filter(|w| !checked.contains(&w.uuid))
                .collect();
            if unchecked.is_empty() {
                break;
            }
            for (w, found) in unchecked.iter().zip(read_exact(&client, &unchecked).await) {
                checked.insert(w.uuid.clone());
                let resolved = found.as_ref().ok().and_then(|f| f.as_ref());
                let Some(i) = inv.instance_by_uuid(&w.uuid) else {
                    held.insert(w.uuid.clone());
                    continue;
                };
                match resolved {
                    Some(f) if plan::still_resolves(w, Some((&f.name, &f.uuid))) => {
                        plan::observe(&mut c.overlay, i, &f.tags);
                    }
                    _ => {
                        match &found {
                            Ok(_) => tracing::info!(
                                cluster = %name, instance = %w.instance, uuid = %w.uuid,
                                "the name no longer resolves to the instance the tags were planned for: not written this pass"
                            ),
                            Err(e) => tracing::debug!(
                                cluster = %name, instance = %w.instance, error = %e,
                                "reading the instance before writing its tags failed"
                            ),
                        }
                        held.insert(w.uuid.clone());
                    }
                }
            }
            planned = make_plan(&c.overlay, &held);
        }
        if !held.is_empty() {
            c.retry_at = Some(Instant::now() + RETRY);
        }
        // A name-keyed ledger is rewritten keyed by UUID on its first pass, even when
        // the entries carry over unchanged.
        if planned.ledger_before != stored.entries || !stored.uuid_keyed {
            c.ledger = None;
            write_ledger(&ctx, name, &planned.ledger_before).await?;
            c.ledger = Some(StoredLedger {
                entries: planned.ledger_before.clone(),
                uuid_keyed: true,
            });
        }
        let outcomes = execute(&client, &planned.writes).await;
        for (w, o) in planned.writes.iter().zip(&outcomes) {
            tracing::info!(
                cluster = %name,
                instance = %w.instance,
                uuid = %w.uuid,
                added = ?w.add,
                add_result = ?o.add,
                removed = ?w.remove,
                remove_result = ?o.remove,
                "instance tags written"
            );
        }
        let after = plan::ledger_after(&planned, &outcomes);
        plan::record_writes(&mut c.overlay, &planned, &outcomes);
        let mut report = planned.report.clone();
        plan::report_failures(&mut report, &planned, &outcomes);
        c.report = Some(report);
        c.failing = None;
        if outcomes.iter().any(|o| o.add.is_err() || o.remove.is_err()) {
            c.retry_at = Some(Instant::now() + RETRY);
        }
        if after != planned.ledger_before {
            c.ledger = None;
            write_ledger(&ctx, name, &after).await?;
            c.ledger = Some(StoredLedger {
                entries: after,
                uuid_keyed: true,
            });
        }
        Ok(())
    }

    async fn write_statuses(&mut self) -> Result<(), Error> {
        let roles = self.roles.state();
        let bindings = self.bindings.state();
        let specs = role_specs(&roles);
        let now = Timestamp::now();
        let states: BTreeMap<String, status::ClusterState<'_>> = self
            .clusters
            .iter()
            .map(|(name, c)| {
                let state = match (&c.failing, &c.report) {
                    (Some(why), _) => status::ClusterState::Failing(why),
                    (None, Some(r)) => status::ClusterState::Synced(r),
                    (None, None) => status::ClusterState::Failing("not synced yet"),
                };
                (name.clone(), state)
            })
            .collect();
        let binding_api: Api<RoleBinding> = Api::all(self.ctx.client.clone());
        for b in &bindings {
            let role = specs.get(b.spec.role_ref.as_str()).copied();
            if let Some(s) = status::binding_status(b, role, &states, now) {
                tracing::debug!(binding = %b.name_any(), status = ?s, "writing RoleBinding status");
                patch_status(&binding_api, &b.name_any(), "RoleBinding", &s).await?;
                self.ctx
                    .metrics
                    .status_writes
                    .with_label_values(&["rolebinding"])
                    .inc();
            }
        }
        let bound = has_administrator_binding(bindings.iter().map(|b| &**b));
        if self.administrator_bound != Some(bound) && !bound {
            tracing::warn!("no RoleBinding binds the administrator role: nobody administers the service");
        }
        self.administrator_bound = Some(bound);
        let all: Vec<&RoleBinding> = bindings.iter().map(|b| &**b).collect();
        let role_api: Api<Role> = Api::all(self.ctx.client.clone());
        for r in &roles {
            if let Some(s) = status::role_status(r, &all, bound, now) {
                tracing::debug!(role = %r.name_any(), "writing Role status");
                patch_status(&role_api, &r.name_any(), "Role", &s).await?;
                self.ctx.metrics.status_writes.with_label_values(&["role"]).inc();
            }
        }
        Ok(())
    }
}

/// Role specs by name as the engine uses them: the preconfigured ones from code.
fn role_specs(roles: &[Arc<Role>]) -> HashMap<String, &RoleSpec> {
    static BUILTIN: std::sync::LazyLock<Vec<Role>> = std::sync::LazyLock::new(preconfigured_roles);
    let mut specs: HashMap<String, &RoleSpec> = roles.iter().map(|r| (r.name_any(), &r.spec)).collect();
    for r in BUILTIN.iter() {
        specs.insert(r.name_any(), &r.spec);
    }
    specs
}

async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    status: &impl serde::Serialize,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": "ganeti.dev/v1alpha1",
        "kind": kind,
        "status": status,
    });
    match api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn load_ledger(ctx: &Context, cluster: &str) -> Result<StoredLedger, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.config.secrets_namespace);
    Ok(match api.get_opt(&ledger_name(cluster)).await? {
        Some(cm) => parse_ledger(&cm),
        // Nothing recorded yet: nothing to migrate either.
        None => StoredLedger {
            entries: Default::default(),
            uuid_keyed: true,
        },
    })
}

async fn write_ledger(ctx: &Context, cluster: &str, ledger: &Ledger) -> Result<(), Error> {
    let ns = &ctx.config.secrets_namespace;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let data: BTreeMap<&str, String> = ledger
        .iter()
        .map(|(i, tags)| (i.as_str(), tags.iter().map(|t| format!("{t}\n")).collect()))
        .collect();
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ledger_name(cluster),
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "ganeti-operator", "ganeti.dev/tag-ledger": "true"},
            "annotations": {
                "ganeti.dev/cluster": cluster,
                "ganeti.dev/description": "Ganeti tags the operator wrote on this cluster's instances (one key per instance UUID); it removes only these. Do not edit.",
                LEDGER_KEYS: LEDGER_KEYS_UUID,
            },
        },
        "data": data,
    });
    api.patch(
        &ledger_name(cluster),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}

/// What an exact-name read of an instance answered.
struct Found {
    name: String,
    uuid: String,
    tags: Vec<String>,
}

/// Each write's instance as Ganeti has it now, read by the name the write will use
/// (`Ok(None)`: no such instance). A few at a time.
async fn read_exact(client: &RapiClient, writes: &[&plan::Write]) -> Vec<Result<Option<Found>, RapiError>> {
    let mut out = Vec::with_capacity(writes.len());
    for chunk in writes.chunks(CONCURRENCY) {
        let read = futures::future::join_all(chunk.iter().map(|w| client.instance(&w.instance))).await;
        out.extend(read.into_iter().map(|r| match r {
            Ok(i) => Ok(Some(Found {
                name: i.name,
                uuid: i.uuid.unwrap_or_default(),
                tags: i.tags,
            })),
            Err(RapiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }));
    }
    out
}

/// Runs each instance's add then remove call, a few instances at a time.
async fn execute(client: &RapiClient, writes: &[plan::Write]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(writes.len());
    for chunk in writes.chunks(CONCURRENCY) {
        outcomes.extend(futures::future::join_all(chunk.iter().map(|w| write_one(client, w))).await);
    }
    outcomes
}

async fn write_one(client: &RapiClient, w: &plan::Write) -> Outcome {
    let add = if w.add.is_empty() {
        Ok(())
    } else {
        let tags: Vec<&str> = w.add.iter().map(String::as_str).collect();
        let submitted = client.add_instance_tags(&w.instance, &tags, &w.add_reason).await;
        finish(client, submitted).await
    };
    let remove = if w.remove.is_empty() {
        Ok(())
    } else {
        let tags: Vec<&str> = w.remove.iter().map(String::as_str).collect();
        let submitted = client
            .remove_instance_tags(&w.instance, &tags, &w.remove_reason)
            .await;
        finish(client, submitted).await
    };
    Outcome {
        uuid: w.uuid.clone(),
        add,
        remove,
    }
}

/// Waits for a submitted tag job to succeed.
async fn finish(client: &RapiClient, submitted: Result<crate::rapi::JobId, RapiError>) -> Result<(), String> {
    let id = submitted.map_err(|e| e.to_string())?;
    client
        .wait_job(id, JOB_DEADLINE)
        .await
        .and_then(|job| job.into_success())
        .map(|_| ())
        .map_err(|e| format!("job {id}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_round_trips_through_configmap_data() {
        let data = BTreeMap::from([
            (
                "0b9c7e5e-6a07-4c43-9d43-0e0c1b9a3f10".to_string(),
                "A:power:U:bob\nA:admin:G:ops\n".to_string(),
            ),
            ("vm2".to_string(), "\n".to_string()),
        ]);
        let mut cm = ConfigMap {
            data: Some(data),
            ..ConfigMap::default()
        };
        let ledger = parse_ledger(&cm);
        assert!(!ledger.uuid_keyed, "no mark: written before UUID keys");
        assert_eq!(ledger.entries.len(), 1);
        assert_eq!(
            ledger.entries["0b9c7e5e-6a07-4c43-9d43-0e0c1b9a3f10"],
            BTreeSet::from(["A:admin:G:ops".to_string(), "A:power:U:bob".to_string()])
        );
        cm.metadata.annotations = Some(BTreeMap::from([(
            LEDGER_KEYS.to_string(),
            LEDGER_KEYS_UUID.to_string(),
        )]));
        assert!(parse_ledger(&cm).uuid_keyed);
        assert_eq!(ledger_name("prod"), "ganeti-tags.prod");
    }
}
