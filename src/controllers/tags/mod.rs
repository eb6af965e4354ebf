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
//! A kube-runtime `Controller` over GanetiClusters, one reconcile at a time (so two
//! clusters never race on a binding's status). Every new authorization snapshot
//! (`access::rules`: a Role, RoleBinding or UserProfile changed, or a cluster's
//! inventory was read anew) wakes every cluster; a cluster syncs when its inventory
//! or the roles and bindings changed since its last sync, or its retry is due
//! ([`RETRY`]). Nothing runs before every watch has listed once: a pass over an empty
//! binding list would remove every tag the operator wrote. A cluster whose inventory
//! is stale (unreachable) is not synced, nor is one observed only (`managementPolicy:
//! Observe`): its bindings' status says that no tags are written there.
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

use super::harness::{self, Error};
use super::written::LastWritten;
use super::{Context, FIELD_MANAGER};
use crate::access::rules::Snapshot;
use crate::api::{GanetiCluster, Role, RoleBinding, RoleBindingStatus, RoleStatus, role::RoleSpec};
use crate::authz::{has_administrator_binding, preconfigured_roles};
use crate::inventory::ClusterInventory;
use crate::rapi::{RapiClient, RapiError};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plan::{Ledger, Outcome, Overlay, StoredLedger};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONTROLLER: &str = "tags";
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
    /// The roles and bindings (by resource version) of the last sync.
    rules: Option<RulesVersion>,
    /// As stored; `None` until read from its ConfigMap (again after a failed write).
    ledger: Option<StoredLedger>,
    overlay: Overlay,
    report: Option<plan::ClusterReport>,
    /// Why the last sync did not happen or failed.
    failing: Option<String>,
    retry_at: Option<Instant>,
}

/// Roles and bindings by resource version, sorted (a store's order is not stable).
type RulesVersion = Vec<Option<String>>;

fn rules_version(snapshot: &Snapshot) -> RulesVersion {
    let mut v: RulesVersion = snapshot
        .roles
        .iter()
        .map(|r| &r.metadata)
        .chain(snapshot.bindings.iter().map(|b| &b.metadata))
        .map(|m| m.resource_version.clone())
        .collect();
    v.sort_unstable();
    v
}

struct TagSync {
    ctx: Arc<Context>,
    clusters: BTreeMap<String, ClusterSync>,
    status_retry_at: Option<Instant>,
    administrator_bound: Option<bool>,
    /// Whether the first complete snapshot was seen (logged once).
    started: bool,
    /// The statuses last written, for passes on a snapshot that predates them.
    bindings_written: LastWritten<RoleBindingStatus>,
    roles_written: LastWritten<RoleStatus>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let api: Api<GanetiCluster> = Api::all(ctx.shared.client.clone());
    let controller = Controller::new(api, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(1));
    let shutdown = super::once_listed(controller.store(), shutdown);
    let snapshots = futures::stream::unfold(ctx.shared.rules.changes(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let state = Arc::new(tokio::sync::Mutex::new(TagSync {
        ctx,
        clusters: BTreeMap::new(),
        status_retry_at: None,
        administrator_bound: None,
        started: false,
        bindings_written: Default::default(),
        roles_written: Default::default(),
    }));
    let results = controller
        .reconcile_all_on(snapshots)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state);
    harness::drive(CONTROLLER, results, |_| {}).await;
}

fn error_policy(
    cluster: Arc<GanetiCluster>,
    error: &Error,
    _state: Arc<tokio::sync::Mutex<TagSync>>,
) -> Action {
    harness::retry(CONTROLLER, &cluster.name_any(), error, RETRY)
}

async fn reconcile(
    cluster: Arc<GanetiCluster>,
    state: Arc<tokio::sync::Mutex<TagSync>>,
) -> Result<Action, Error> {
    let mut sync = state.lock().await;
    let ctx = sync.ctx.clone();
    let name = cluster.name_any();
    let work = sync.pass(&name);
    harness::reconcile(CONTROLLER, &ctx.shared.metrics, &ctx.recorder, &*cluster, work).await
}

impl TagSync {
    /// One cluster's turn: syncs it if anything it depends on changed, then writes
    /// the RoleBinding and Role statuses if anything they show changed.
    async fn pass(&mut self, name: &str) -> Result<Action, Error> {
        let snapshot = self.ctx.shared.rules.current();
        if !snapshot.listed {
            // Woken again by the first snapshot.
            return Ok(Action::await_change());
        }
        if !self.started {
            tracing::info!("tag sync: roles and bindings listed; syncing");
            self.started = true;
        }
        let now = Instant::now();
        // Deleted GanetiClusters: their inventory is gone from the snapshot.
        self.clusters.retain(|n, _| snapshot.inventory(n).is_some());
        let Some(inv) = snapshot.inventory(name).cloned() else {
            // Not read yet: the snapshot with its first read wakes this cluster.
            return Ok(Action::await_change());
        };
        let rules = rules_version(&snapshot);
        let mut report = self.status_retry_at.is_some_and(|t| now >= t);
        let c = self.clusters.entry(name.to_string()).or_default();
        let fresh = c.snapshot.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &inv));
        let mut dirty = c.rules.as_ref() != Some(&rules) || c.retry_at.is_some_and(|t| now >= t);
        if fresh {
            if inv.reachable {
                plan::age_overlay(&mut c.overlay, &inv.instances);
                dirty = true;
            } else if c.failing.is_none() {
                c.failing = Some("the cluster is unreachable; its inventory is stale".into());
                report = true;
            }
            c.snapshot = Some(inv);
        }
        let mut result = Ok(());
        if dirty {
            report = true;
            c.rules = Some(rules);
            result = self.sync_cluster(name, &snapshot).await;
            if let Err(e) = &result {
                let c = self.clusters.get_mut(name).expect("cluster known");
                c.failing = Some(e.to_string());
                c.retry_at = Some(Instant::now() + RETRY);
            }
        }
        if report {
            self.status_retry_at = match self.write_statuses(&snapshot).await {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "writing RoleBinding/Role status failed");
                    Some(Instant::now() + RETRY)
                }
            };
        }
        result?;
        let next = [
            self.clusters.get(name).and_then(|c| c.retry_at),
            self.status_retry_at,
        ]
        .into_iter()
        .flatten()
        .min();
        Ok(match next {
            Some(at) => Action::requeue(at.saturating_duration_since(Instant::now())),
            None => Action::await_change(),
        })
    }

    /// Plans and applies one cluster's tags. `Err` for Kubernetes failures; RAPI
    /// failures are reported on the bindings and retried.
    async fn sync_cluster(&mut self, name: &str, snapshot: &Snapshot) -> Result<(), Error> {
        let ctx = self.ctx.clone();
        let (roles, bindings) = (&snapshot.roles, &snapshot.bindings);
        let c = self.clusters.get_mut(name).expect("cluster known");
        c.retry_at = None;
        let Some(inv) = c.snapshot.clone().filter(|i| i.reachable) else {
            return Ok(());
        };
        if inv.observed {
            // Not a failure to retry: the bindings' status says no tags go there.
            c.report = None;
            c.failing = None;
            return Ok(());
        }
        if inv.gwm.write_ids
            && let Some((_, why)) = &inv.gwm.problem
        {
            // Names instead of ids would rewrite every tag GWM reads, and back once the
            // map is fixed: nothing is written until it is (the map's watch brings a
            // new snapshot then).
            c.failing = Some(format!("tags are written with GWM ids, and {why}"));
            return Ok(());
        }
        let Some(client) = ctx.shared.clusters.client(name) else {
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

        // The snapshot's index was built from this very inventory (`inv` came from it).
        let index = &snapshot.index;
        let specs = role_specs(roles);
        let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for b in bindings {
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
                write_ids: inv.gwm.ids.as_deref().filter(|_| inv.gwm.write_ids),
                index,
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

    async fn write_statuses(&mut self, snapshot: &Snapshot) -> Result<(), Error> {
        let (roles, bindings) = (&snapshot.roles, &snapshot.bindings);
        let specs = role_specs(roles);
        let now = Timestamp::now();
        let states: BTreeMap<String, status::ClusterState<'_>> = self
            .clusters
            .iter()
            .map(|(name, c)| {
                let observed = c.snapshot.as_ref().is_some_and(|i| i.observed);
                let state = match (&c.failing, &c.report) {
                    _ if observed => status::ClusterState::Observed,
                    (Some(why), _) => status::ClusterState::Failing(why),
                    (None, Some(r)) => status::ClusterState::Synced(r),
                    (None, None) => status::ClusterState::Failing("not synced yet"),
                };
                (name.clone(), state)
            })
            .collect();
        let binding_api: Api<RoleBinding> = Api::all(self.ctx.shared.client.clone());
        for b in bindings {
            let role = specs.get(b.spec.role_ref.as_str()).copied();
            // Another cluster's turn may come before the snapshot has our last write:
            // plan against what we wrote, not the stale copy (which would write it again).
            let (name, planned_from) = (b.name_any(), b.resource_version().unwrap_or_default());
            let caught_up = self
                .bindings_written
                .newer_than_cache(&name, &planned_from)
                .map(|ours| RoleBinding {
                    status: Some(ours),
                    ..(**b).clone()
                });
            if let Some(s) = status::binding_status(caught_up.as_ref().unwrap_or(b), role, &states, now) {
                tracing::debug!(binding = %name, status = ?s, "writing RoleBinding status");
                patch_status(&binding_api, &name, &s).await?;
                self.bindings_written.record(&name, &planned_from, s);
                self.ctx
                    .shared
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
        let role_api: Api<Role> = Api::all(self.ctx.shared.client.clone());
        for r in roles {
            let (name, planned_from) = (r.name_any(), r.resource_version().unwrap_or_default());
            let caught_up = self
                .roles_written
                .newer_than_cache(&name, &planned_from)
                .map(|ours| Role {
                    status: Some(ours),
                    ..(**r).clone()
                });
            if let Some(s) = status::role_status(caught_up.as_ref().unwrap_or(r), &all, bound, now) {
                tracing::debug!(role = %name, "writing Role status");
                patch_status(&role_api, &name, &s).await?;
                self.roles_written.record(&name, &planned_from, s);
                self.ctx
                    .shared
                    .metrics
                    .status_writes
                    .with_label_values(&["role"])
                    .inc();
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

async fn patch_status<K>(api: &Api<K>, name: &str, status: &impl serde::Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match crate::status::apply(api, name, status).await {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn load_ledger(ctx: &Context, cluster: &str) -> Result<StoredLedger, Error> {
    let api: Api<ConfigMap> =
        Api::namespaced(ctx.shared.client.clone(), &ctx.shared.config.secrets_namespace);
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
    let ns = &ctx.shared.config.secrets_namespace;
    let api: Api<ConfigMap> = Api::namespaced(ctx.shared.client.clone(), ns);
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
