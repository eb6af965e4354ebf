//! The tag-sync controller: keeps each Ganeti cluster's permission tags equal to what
//! RoleBindings and InstanceApplications imply, and reports on every RoleBinding and Role.
//!
//! observe (Role, RoleBinding and InstanceApplication watches; the shared inventory) ->
//! plan (`plan::plan`, `status::*`, pure) -> apply (RAPI tag calls, ledger and status
//! patches, each only when something changed).
//!
//! # When it runs
//! One task, one cluster at a time (so two clusters never race on a binding's status). A
//! cluster is synced after each refresh of its inventory (a new snapshot in the shared
//! [`Inventory`](crate::inventory::Inventory)) and after any change of a Role, RoleBinding
//! or InstanceApplication; a failed sync is retried after [`RETRY`]. Nothing runs before
//! every watch has listed once: a pass over an empty binding list would remove every tag
//! the operator wrote. A cluster whose inventory is stale (unreachable) is not synced.
//!
//! # The ledger: which tags are the operator's
//! The operator removes only grant tags it added itself. It records them per cluster in
//! the ConfigMap `ganeti-tags.<cluster>` of its own namespace (the `--secrets-namespace`):
//! one key per instance, one tag per line. A ConfigMap, not a status field, because the
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
use crate::api::{InstanceApplication, Role, RoleBinding, application::Phase, role::RoleSpec};
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
use plan::{Ledger, Outcome, Overlay};
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

/// Name of a cluster's ledger ConfigMap.
pub fn ledger_name(cluster: &str) -> String {
    format!("{LEDGER_PREFIX}{cluster}")
}

/// The ledger from a ConfigMap's data.
pub fn parse_ledger(data: &BTreeMap<String, String>) -> Ledger {
    data.iter()
        .map(|(instance, tags)| {
            let tags: BTreeSet<String> = tags
                .lines()
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            (instance.clone(), tags)
        })
        .filter(|(_, tags)| !tags.is_empty())
        .collect()
}

/// What the controller remembers of one cluster (in memory; the ledger is also stored).
#[derive(Default)]
struct ClusterSync {
    snapshot: Option<Arc<ClusterInventory>>,
    /// `None` until read from its ConfigMap (again after a failed write).
    ledger: Option<Ledger>,
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
    applications: Store<InstanceApplication>,
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
    let applications = watch(
        Api::<InstanceApplication>::all(ctx.client.clone()),
        changed.clone(),
    );
    let flags = [
        roles.listed.clone(),
        bindings.listed.clone(),
        applications.listed.clone(),
    ];
    let tasks = [roles.task, bindings.task, applications.task];
    let mut sync = TagSync {
        ctx,
        roles: roles.store,
        bindings: bindings.store,
        applications: applications.store,
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
            tracing::info!("tag sync: roles, bindings and applications listed; syncing");
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
        let applications = self.applications.state();
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
        let ledger = match c.ledger.take() {
            Some(l) => l,
            None => load_ledger(&ctx, name).await?,
        };
        c.ledger = Some(ledger.clone());

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
        let owned: Vec<plan::OwnedInstance> = applications
            .iter()
            .filter_map(|a| {
                let s = a.status.as_ref()?;
                (s.phase == Phase::Created && s.cluster.as_deref() == Some(name)).then_some(())?;
                Some(plan::OwnedInstance {
                    instance: s.instance_name.clone()?,
                    owner: a.spec.owner.clone(),
                    application: format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()),
                })
            })
            .collect();
        let make_plan = |overlay: &Overlay| {
            plan::plan(&plan::Input {
                cluster: name,
                prefix: &inv.tag_prefix,
                index: &index,
                instances: &inv.instances,
                listed: &listed,
                owned: &owned,
                ledger: &ledger,
                overlay,
            })
        };
        let mut planned = make_plan(&c.overlay);
        // Adds are planned from a snapshot up to one sync interval old: read the tags of
        // those instances again, so a tag written by hand meanwhile is neither added nor
        // recorded as the operator's.
        let to_add: Vec<&str> = planned
            .writes
            .iter()
            .filter(|w| !w.add.is_empty())
            .map(|w| w.instance.as_str())
            .collect();
        if !to_add.is_empty() {
            for (instance, fresh) in read_tags(&client, &to_add).await {
                if let Some(i) = inv.instances.iter().find(|i| i.name == instance) {
                    plan::observe(&mut c.overlay, i, &fresh);
                }
            }
            planned = make_plan(&c.overlay);
        }
        for e in &planned.report.owner_errors {
            tracing::warn!(cluster = %name, error = %e, "owner tag not written");
        }
        if planned.ledger_before != ledger {
            c.ledger = None;
            write_ledger(&ctx, name, &planned.ledger_before).await?;
            c.ledger = Some(planned.ledger_before.clone());
        }
        let outcomes = execute(&client, &planned.writes).await;
        for (w, o) in planned.writes.iter().zip(&outcomes) {
            tracing::info!(
                cluster = %name,
                instance = %w.instance,
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
            c.ledger = Some(after);
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

async fn load_ledger(ctx: &Context, cluster: &str) -> Result<Ledger, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.config.secrets_namespace);
    Ok(api
        .get_opt(&ledger_name(cluster))
        .await?
        .and_then(|cm| cm.data)
        .map(|d| parse_ledger(&d))
        .unwrap_or_default())
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
                "ganeti.dev/description": "Ganeti tags the operator wrote on this cluster's instances (one key per instance); it removes only these. Do not edit.",
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

/// The current tags of some instances (those that could be read).
async fn read_tags(client: &RapiClient, instances: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::with_capacity(instances.len());
    for chunk in instances.chunks(CONCURRENCY) {
        let read = futures::future::join_all(chunk.iter().map(|i| client.instance_tags(i))).await;
        for (instance, tags) in chunk.iter().zip(read) {
            match tags {
                Ok(tags) => out.push((instance.to_string(), tags)),
                Err(e) => tracing::debug!(%instance, error = %e, "reading instance tags failed"),
            }
        }
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
        instance: w.instance.clone(),
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
                "vm1.example.org".to_string(),
                "A:power:U:bob\nA:admin:G:ops\n".to_string(),
            ),
            ("vm2".to_string(), "\n".to_string()),
        ]);
        let ledger = parse_ledger(&data);
        assert_eq!(ledger.len(), 1);
        assert_eq!(
            ledger["vm1.example.org"],
            BTreeSet::from(["A:admin:G:ops".to_string(), "A:power:U:bob".to_string()])
        );
        assert_eq!(ledger_name("prod"), "ganeti-tags.prod");
    }
}
