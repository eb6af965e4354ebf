//! The InstanceApplication controller: approval within quota, creation through RAPI,
//! mails to the applicant.
//!
//! observe (cluster, quotas, applications, Ganeti) -> plan (`plan`, pure) -> apply (one
//! status write per step, then the RAPI call the new status announces).
//!
//! # Crash safety
//! Every step is recorded before the next one starts, and every step can be repeated:
//! - The approval is written (phase `Approved`, with the approved generation and the
//!   name to create) before anything is submitted.
//! - Before submitting again after a restart, Ganeti is asked for instances carrying the
//!   application's marker tag (`plan::marker_tag`, sent with the create request beside
//!   the owner tag), and its job list for a create job of the approved name: a restart
//!   after the POST but before the job id was recorded adopts that instance (whatever it
//!   is called now) or that job, instead of submitting again.
//! - The job id is written (phase `Creating`) before anything waits on it; a restart
//!   follows the recorded job. When it ends (or is archived), the instance is the one
//!   carrying the marker and the owner tag, and its UUID is recorded: never an instance
//!   found by the spec's hostname, which may have been changed to another VM's name.
//!   An adopted job that turns out to be someone else's leaves no marked instance, and
//!   the application fails rather than take a stranger's VM.
//! - A spec changed after the approval is created only if a job for the approved one was
//!   already under way; otherwise it goes back to Pending and needs a new decision
//!   (`plan::changed_after_approval`).
//!
//! Quota decisions that approve are serialised per cluster and made on a fresh list of
//! applications, so two approvals cannot together overshoot a quota.
//!
//! Deleting an application never touches Ganeti: a created VM outlives it (remove VMs
//! through the console API or Ganeti).

pub mod plan;

use super::harness::{self, Error};
use super::{Context, FIELD_MANAGER};
use crate::api::application::{InstanceApplication, InstanceApplicationStatus, Phase};
use crate::api::cluster::GanetiCluster;
use crate::api::conditions;
use crate::api::profile::UserProfile;
use crate::api::quota::ClusterQuota;
use crate::api::role::{ClusterRight, Role};
use crate::api::{RoleBinding, SubjectKind};
use crate::authz::{AuthzIndex, Principal, Request};
use crate::fault;
use crate::inventory::Instance;
use crate::mail::{Mail, Mailer, address_for};
use crate::rapi::{JobId, JobProgress, RapiClient, RapiError};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plan::{Catalog, ClusterView, MailKind, Pending};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONTROLLER: &str = "instanceapplication";
/// How often a waiting application (no decision, no quota, cluster not ready) is looked at again.
const PENDING_RESYNC: Duration = Duration::from_secs(60);
/// How long Ganeti's OS and disk template lists are reused.
const CATALOG_TTL: Duration = Duration::from_secs(60);
/// How often a young create job is polled, and an old one at least.
const JOB_POLL: Duration = Duration::from_secs(1);
const JOB_POLL_MAX: Duration = Duration::from_secs(10);

/// The controller's own state, beside the shared context.
struct State {
    ctx: Arc<Context>,
    recorder: Recorder,
    /// Per cluster: held while an approval is decided and recorded.
    approvals: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per cluster: Ganeti's OS and disk template lists, and when they were read. Listing
    /// OSes makes Ganeti ask every node, so many waiting applications share one answer.
    catalogs: Arc<tokio::sync::Mutex<HashMap<String, (Instant, Catalog)>>>,
    /// The controller's cache of applications: enough to see that one does not fit or
    /// waits; approving re-reads them from the API server.
    applications: Store<InstanceApplication>,
    /// Per cluster: the create jobs being followed and their statuses, read for all of
    /// them in one query at most once per [`JOB_POLL`], so a hundred VMs being created
    /// cost Ganeti one small query a second, not a hundred full job reads.
    job_boards: Mutex<HashMap<String, Arc<tokio::sync::Mutex<JobBoard>>>>,
}

#[derive(Default)]
struct JobBoard {
    followed: BTreeSet<u64>,
    progress: HashMap<u64, JobProgress>,
    read_at: Option<Instant>,
}

impl State {
    /// Where `id` stands in Ganeti, from the cluster's shared job board (read again
    /// when older than [`JOB_POLL`] or when `id` is new to it); `None`: Ganeti no
    /// longer knows the job (archived).
    async fn job_progress(
        &self,
        cluster: &str,
        client: &RapiClient,
        id: u64,
    ) -> Result<Option<JobProgress>, RapiError> {
        let board = self
            .job_boards
            .lock()
            .expect("job boards lock")
            .entry(cluster.to_string())
            .or_default()
            .clone();
        let mut board = board.lock().await;
        board.followed.insert(id);
        let fresh =
            board.read_at.is_some_and(|at| at.elapsed() < JOB_POLL) && board.progress.contains_key(&id);
        if !fresh {
            let ids: Vec<u64> = board.followed.iter().copied().collect();
            let rows = client.job_progress(&ids).await?;
            board.progress = rows.into_iter().map(|p| (p.id, p)).collect();
            board.read_at = Some(Instant::now());
        }
        let progress = board.progress.get(&id).copied();
        // A finished or forgotten job is not followed any more.
        if progress.is_none_or(|p| p.status.is_final()) {
            board.followed.remove(&id);
        }
        Ok(progress)
    }

    fn approval_lock(&self, cluster: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.approvals
            .lock()
            .expect("approvals lock")
            .entry(cluster.to_string())
            .or_default()
            .clone()
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let apps: Api<InstanceApplication> = Api::all(ctx.client.clone());
    let controller = Controller::new(apps, watcher::Config::default());
    let store = controller.store();
    let shutdown = super::once_listed(store.clone(), shutdown);
    let state = Arc::new(State {
        recorder: Recorder::new(ctx.client.clone(), Reporter::from(FIELD_MANAGER.to_string())),
        ctx: ctx.clone(),
        approvals: Mutex::default(),
        catalogs: Default::default(),
        applications: store.clone(),
        job_boards: Mutex::default(),
    });
    let quota_store = store.clone();
    let cluster_store = store.clone();
    // Per cluster: its generation and readiness as last seen. A cluster's status changes
    // with every inventory change; only these two matter to waiting applications, and
    // waking every one of them on each sync would flood the API servers.
    let seen: Mutex<HashMap<String, (Option<i64>, bool)>> = Mutex::default();
    controller
        // A changed quota may let waiting applications through (or stop them).
        .watches(
            Api::<ClusterQuota>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |q| waiting_on(&quota_store, Some(&q.spec.cluster)),
        )
        // A cluster becoming ready (or its spec changing) matters to waiting ones.
        .watches(
            Api::<GanetiCluster>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |c| {
                let ready = c
                    .status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, "Ready"));
                let now = (c.metadata.generation, ready);
                let before = seen.lock().expect("seen lock").insert(c.name_any(), now);
                if before == Some(now) {
                    return Vec::new();
                }
                waiting_on(&cluster_store, Some(&c.name_any()))
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "instanceapplication reconcile event");
            }
        })
        .await;
}

/// Pending applications naming `cluster`.
fn waiting_on(
    store: &Store<InstanceApplication>,
    cluster: Option<&str>,
) -> Vec<ObjectRef<InstanceApplication>> {
    store
        .state()
        .into_iter()
        .filter(|a| plan::phase(a) == Phase::Pending && a.spec.cluster.as_deref() == cluster)
        .map(|a| ObjectRef::from_obj(&*a))
        .collect()
}

fn error_policy(app: Arc<InstanceApplication>, error: &Error, _state: Arc<State>) -> Action {
    harness::retry(CONTROLLER, &key(&app), error, Duration::from_secs(5))
}

fn key(app: &InstanceApplication) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

async fn reconcile(app: Arc<InstanceApplication>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let work = reconcile_inner(app.clone(), &state);
    harness::reconcile(CONTROLLER, &ctx.metrics, &state.recorder, &*app, work).await
}

async fn reconcile_inner(app: Arc<InstanceApplication>, state: &State) -> Result<Action, Error> {
    if app.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut app = (*app).clone();
    let mut action = Action::await_change();
    // Approved by this very reconcile: no create job can exist yet (none is submitted
    // before the approval is stored, and nothing else reconciles this object meanwhile).
    let mut approved_here = false;
    if plan::needs_evaluation(&app) {
        action = evaluate(&mut app, state).await?;
        approved_here = plan::phase(&app) == Phase::Approved;
    }
    if plan::phase(&app) == Phase::Approved {
        action = submit(&mut app, state, approved_here).await?;
    }
    if plan::phase(&app) == Phase::Creating {
        action = follow(&mut app, state).await?;
    }
    if let Some(kind) = plan::mail_due(&app)
        && let Some(retry) = mail_applicant(&mut app, kind, state).await?
    {
        return Ok(Action::requeue(retry));
    }
    Ok(action)
}

/// What the validation of a Pending application reads: the cluster object, its
/// inventory and Ganeti's OS and disk template lists.
struct ClusterLookup {
    name: String,
    cluster: Option<GanetiCluster>,
    not_ready: Option<String>,
    catalog: Catalog,
}

async fn cluster_facts(app: &InstanceApplication, state: &State) -> Result<Option<ClusterLookup>, Error> {
    let Some(name) = app.spec.cluster.clone() else {
        return Ok(None);
    };
    let api: Api<GanetiCluster> = Api::all(state.ctx.client.clone());
    let cluster = api.get_opt(&name).await?;
    let mut facts = ClusterLookup {
        name: name.clone(),
        cluster,
        not_ready: None,
        catalog: Catalog::default(),
    };
    let Some(cluster) = &facts.cluster else {
        return Ok(Some(facts));
    };
    let ready = cluster
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, "Ready"));
    let client = state.ctx.clusters.client(&name);
    match (ready, client, state.ctx.inventory.get(&name)) {
        (Some(c), Some(client), Some(inv)) if c.status == "True" && inv.reachable => {
            match catalog(state, &name, &client).await {
                Ok(catalog) => facts.catalog = catalog,
                Err(e) => facts.not_ready = Some(format!("Ganeti did not answer: {e}")),
            }
        }
        (Some(c), _, _) if c.status != "True" => facts.not_ready = Some(c.message.clone()),
        _ => facts.not_ready = Some("the operator has not read it yet".to_string()),
    }
    Ok(Some(facts))
}

/// Whether the applicant may approve themselves on `cluster` (`clusters.createVm`).
async fn may_self_approve(app: &InstanceApplication, cluster: &str, state: &State) -> Result<bool, Error> {
    let Some(applicant) = app.spec.applicant.as_deref() else {
        return Ok(false);
    };
    let client = &state.ctx.client;
    let lp = ListParams::default();
    let (roles, bindings, profiles) = (
        Api::<Role>::all(client.clone()),
        Api::<RoleBinding>::all(client.clone()),
        Api::<UserProfile>::all(client.clone()),
    );
    let (roles, bindings, profiles) =
        tokio::try_join!(roles.list(&lp), bindings.list(&lp), profiles.list(&lp))?;
    // Groups: what admission vouched for (a group owner is one of the applicant's
    // groups) and what the applicant's profile records (set by admins only).
    let mut groups: Vec<String> = profiles
        .items
        .iter()
        .filter(|p| p.spec.username == applicant)
        .flat_map(|p| p.spec.groups.clone())
        .collect();
    if app.spec.owner.kind == SubjectKind::Group {
        groups.push(app.spec.owner.name.clone());
    }
    let index = AuthzIndex::build(&roles.items, &bindings.items, []);
    let decision = index.decide(
        &Principal::new(applicant, &groups),
        &Request::Cluster {
            cluster,
            right: ClusterRight::CreateVm,
        },
    );
    Ok(decision.allowed)
}

async fn evaluate(app: &mut InstanceApplication, state: &State) -> Result<Action, Error> {
    let client = &state.ctx.client;
    let facts = cluster_facts(app, state).await?;
    let quotas = Api::<ClusterQuota>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let inventory = facts.as_ref().and_then(|f| state.ctx.inventory.get(&f.name));
    let self_approve = match &facts {
        Some(f)
            if !matches!(plan::decision_in_force(app), plan::InForce::Fresh(_))
                && f.cluster.is_some()
                && f.not_ready.is_none() =>
        {
            may_self_approve(app, &f.name, state).await?
        }
        _ => false,
    };
    let evaluate_with = |applications: &[InstanceApplication]| {
        let cluster = match (&facts, &inventory) {
            (None, _) => ClusterView::Unchosen,
            (Some(f), _) if f.cluster.is_none() => ClusterView::Missing(&f.name),
            (Some(f), Some(inv)) if f.not_ready.is_none() => ClusterView::Ready {
                name: &f.name,
                spec: &f.cluster.as_ref().expect("checked").spec,
                inventory: inv,
                catalog: &f.catalog,
            },
            (Some(f), _) => ClusterView::NotReady {
                name: &f.name,
                message: f.not_ready.as_deref().unwrap_or("not read yet"),
            },
        };
        plan::evaluate(&Pending {
            app,
            cluster,
            quotas: &quotas,
            applications,
            may_self_approve: self_approve,
            now: Timestamp::now(),
        })
    };
    let list = || async {
        Api::<InstanceApplication>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
    };
    let cached: Vec<InstanceApplication> = state.applications.state().iter().map(|a| (**a).clone()).collect();
    let mut evaluation = evaluate_with(&cached);
    let approval_asked = self_approve
        || matches!(plan::decision_in_force(app),
            plan::InForce::Fresh(d) if d.verdict == crate::api::application::Verdict::Approved);
    match facts.as_ref().filter(|f| approval_asked && f.cluster.is_some()) {
        // Decide an approval under the cluster's lock, on applications listed after every
        // earlier approval on it was stored (the cache may not show them yet).
        Some(f) => {
            let lock = state.approval_lock(&f.name);
            let _held = lock.lock().await;
            evaluation = evaluate_with(&list().await?);
            if app.status.as_ref() != Some(&evaluation.status) {
                write_status(app, state, evaluation.status.clone()).await?;
            }
        }
        None if app.status.as_ref() != Some(&evaluation.status) => {
            write_status(app, state, evaluation.status.clone()).await?;
        }
        None => {}
    }
    if let Some(note) = &evaluation.note {
        event(state, app, note.warning, note.reason, &note.message).await;
    }
    if evaluation.approved {
        fault::point(fault::points::AFTER_DECISION);
        Ok(Action::await_change())
    } else {
        Ok(Action::requeue(resync_delay(app)))
    }
}

/// `PENDING_RESYNC` give or take a sixth, fixed per application: applications filed
/// together do not all come back at the same moment.
fn resync_delay(app: &InstanceApplication) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    app.metadata.uid.hash(&mut hasher);
    let spread = PENDING_RESYNC.as_millis() as u64 / 3;
    PENDING_RESYNC - Duration::from_millis(spread / 2) + Duration::from_millis(hasher.finish() % spread)
}

/// The RAPI client and the GanetiCluster an approved application is created on.
async fn cluster_client(
    app: &InstanceApplication,
    state: &State,
) -> Result<(Arc<RapiClient>, GanetiCluster), Error> {
    let name = app
        .status
        .as_ref()
        .and_then(|s| s.cluster.clone())
        .or_else(|| app.spec.cluster.clone())
        .ok_or_else(|| Error::Invalid("an approved application without a cluster".into()))?;
    let cluster = Api::<GanetiCluster>::all(state.ctx.client.clone())
        .get_opt(&name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("GanetiCluster {name} is gone")))?;
    let client = state
        .ctx
        .clusters
        .client(&name)
        .ok_or_else(|| Error::Invalid(format!("GanetiCluster {name} has not been read yet")))?;
    Ok((client, cluster))
}

fn tag_prefix(cluster: &GanetiCluster) -> &str {
    cluster
        .spec
        .tag_prefix
        .as_deref()
        .unwrap_or(crate::tags::DEFAULT_PREFIX)
}

fn rapi(e: RapiError) -> Error {
    Error::Rapi(e)
}

/// The instance by name, from Ganeti itself (the inventory may be a sync behind). What
/// is found goes into the shared inventory at once, so that quota decisions count a VM
/// just created before the next bulk read shows it.
async fn lookup(
    state: &State,
    cluster: &str,
    client: &RapiClient,
    name: &str,
) -> Result<Option<Instance>, Error> {
    match client.instance(name).await {
        Ok(wire) => {
            let instance: Instance = wire.into();
            state.ctx.inventory.upsert_instance(cluster, instance.clone());
            Ok(Some(instance))
        }
        Err(RapiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(rapi(e)),
    }
}

/// The instances carrying the application's marker tag, fresh from Ganeti (each read in
/// full, and put into the shared inventory like [`lookup`]'s).
async fn marked(
    state: &State,
    cluster: &str,
    client: &RapiClient,
    app: &InstanceApplication,
    prefix: &str,
) -> Result<Vec<Instance>, Error> {
    let marker = plan::marker_tag(app, prefix).map_err(Error::Invalid)?;
    let mut found = Vec::new();
    for name in client.instances_tagged(&marker).await.map_err(rapi)? {
        match lookup(state, cluster, client, &name).await? {
            Some(instance) => found.push(instance),
            // Renamed between the two reads: look again rather than miss it.
            None => {
                return Err(Error::Invalid(format!(
                    "instance {name} vanished while it was read; trying again"
                )));
            }
        }
    }
    Ok(found)
}

/// Approved: adopt what an earlier attempt left in Ganeti, else submit the create job.
/// `approved_here`: the approval was stored by this reconcile, so no earlier attempt
/// can have left a job or an instance behind, and Ganeti need not be searched.
async fn submit(app: &mut InstanceApplication, state: &State, approved_here: bool) -> Result<Action, Error> {
    if !approved_here {
        // The watch cache may lag behind our own last write: decide on what is stored,
        // so a job already recorded is never submitted again.
        let api: Api<InstanceApplication> =
            Api::namespaced(state.ctx.client.clone(), &app.namespace().unwrap_or_default());
        *app = api.get_status(&app.name_any()).await?;
        if plan::phase(app) != Phase::Approved {
            return Ok(Action::requeue(JOB_POLL));
        }
    }
    let (client, cluster) = cluster_client(app, state).await?;
    let prefix = tag_prefix(&cluster).to_string();
    // The name fixed at approval, not the spec's: that may have changed since.
    let host = plan::approved_name(app).to_string();
    let now = Timestamp::now();
    // What an earlier attempt may have created, known by the application's own tags
    // whatever it is called now. Right after the approval there was none (and a VM
    // someone else made under the name meanwhile fails the job: `already_exists`).
    if !approved_here {
        let found = marked(state, &cluster.name_any(), &client, app, &prefix).await?;
        if let Some(status) = plan::adopt(app, &found, &prefix, now) {
            write_status(app, state, status).await?;
            return Ok(Action::await_change());
        }
    }
    // A create job that a crashed predecessor submitted but did not record. (Should it
    // be someone else's job for the name, its end shows no instance with this
    // application's tags, and the application fails rather than adopt a stranger.)
    let summary = format!("INSTANCE_CREATE({host})");
    let running = if approved_here {
        None
    } else {
        client
            .unfinished_jobs()
            .await
            .map_err(rapi)?
            .into_iter()
            .filter(|j| j.summary.contains(&summary))
            .map(|j| j.id)
            .max()
    };
    let (job, adopted) = match running {
        Some(id) => (id, true),
        // Created from the approved generation only: a spec changed since goes back to
        // Pending, where the change needs a decision of its own.
        None if !plan::spec_is_approved(app) => {
            let status = plan::changed_after_approval(app, now);
            write_status(app, state, status).await?;
            event(
                state,
                app,
                true,
                "ChangedAfterApproval",
                "the spec changed after the approval; nothing was created and the change needs a new decision",
            )
            .await;
            return Ok(Action::requeue(JOB_POLL));
        }
        None => {
            let profiles = Api::<UserProfile>::all(state.ctx.client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            let catalog = catalog(state, &cluster.name_any(), &client).await?;
            let request = match plan::create_request(app, &cluster.spec, &catalog, &prefix, &profiles) {
                Ok(r) => r,
                Err(message) => {
                    let status = plan::failed_locally(app, "InvalidApplication", message, now);
                    write_status(app, state, status).await?;
                    return Ok(Action::await_change());
                }
            };
            match client.create_instance(&request, &plan::create_reason(app)).await {
                Ok(JobId(id)) => {
                    fault::point(fault::points::AFTER_CREATE_POST);
                    (id, false)
                }
                // Ganeti refused the request itself: no job, nothing to adopt later.
                Err(RapiError::BadRequest { message }) => {
                    let status = plan::failed_locally(app, "BadRequest", message, now);
                    write_status(app, state, status).await?;
                    return Ok(Action::await_change());
                }
                // Anything else (timeout, connection lost) may or may not have created a
                // job: retry, and the lookup above adopts it if it exists.
                Err(e) => return Err(rapi(e)),
            }
        }
    };
    let status = plan::submitted(app, job, adopted, now);
    write_status(app, state, status).await?;
    let verb = if adopted { "found running" } else { "submitted" };
    event(
        state,
        app,
        false,
        "Creating",
        &format!("Ganeti job {job} ({verb}) creates {host}"),
    )
    .await;
    fault::point(fault::points::WHILE_JOB_RUNS);
    Ok(Action::requeue(JOB_POLL))
}

/// The cluster's catalog. Read from Ganeti when none is known; once known, an answer
/// older than `CATALOG_TTL` is refreshed in the background while the known one serves,
/// so no approval waits for Ganeti to ask its nodes for their OSes.
async fn catalog(state: &State, cluster: &str, client: &Arc<RapiClient>) -> Result<Catalog, RapiError> {
    // Held across the first read: waiting applications share one answer.
    let mut catalogs = state.catalogs.lock().await;
    let Some((at, catalog)) = catalogs.get(cluster).cloned() else {
        let catalog = read_catalog(client).await?;
        catalogs.insert(cluster.to_string(), (Instant::now(), catalog.clone()));
        return Ok(catalog);
    };
    if at.elapsed() >= CATALOG_TTL {
        // Stamped now so that one refresh runs at a time.
        catalogs.insert(cluster.to_string(), (Instant::now(), catalog.clone()));
        let (catalogs, client, cluster) = (state.catalogs.clone(), client.clone(), cluster.to_string());
        tokio::spawn(async move {
            match read_catalog(&client).await {
                Ok(fresh) => {
                    catalogs.lock().await.insert(cluster, (Instant::now(), fresh));
                }
                Err(e) => tracing::debug!(%cluster, error = %e, "refreshing the OS list failed"),
            }
        });
    }
    Ok(catalog)
}

async fn read_catalog(client: &RapiClient) -> Result<Catalog, RapiError> {
    let (info, os) = tokio::join!(client.info(), client.operating_systems());
    Ok(Catalog {
        operating_systems: os?,
        disk_templates: info?.enabled_disk_templates,
    })
}

/// Creating: follow the recorded job.
async fn follow(app: &mut InstanceApplication, state: &State) -> Result<Action, Error> {
    let (client, cluster) = cluster_client(app, state).await?;
    let prefix = tag_prefix(&cluster).to_string();
    let id = app
        .status
        .as_ref()
        .and_then(|s| s.job_id)
        .ok_or_else(|| Error::Invalid("phase Creating without a job id".into()))?;
    let now = Timestamp::now();
    let finished = match state.job_progress(&cluster.name_any(), &client, id).await {
        Ok(Some(p)) if !p.status.is_final() => return Ok(Action::requeue(poll_delay(p.received_ts))),
        // Finished: its whole record, for Ganeti's message if it failed.
        Ok(Some(_)) => client.job(JobId(id)).await,
        Ok(None) => Err(RapiError::NotFound {
            message: format!("job {id} is unknown"),
        }),
        Err(e) => Err(e),
    };
    // `Some(failure)`: the job failed; `None` with `known`: it succeeded.
    let (failure, known) = match finished {
        Ok(job) if !job.status.is_final() => return Ok(Action::requeue(poll_delay(job.received_ts))),
        Ok(job) => (job.failure(), true),
        Err(RapiError::NotFound { .. }) => (None, false),
        Err(e) => return Err(rapi(e)),
    };
    let outcome = match (&failure, known) {
        (Some(f), _) => plan::JobOutcome::Failed(f),
        (None, true) => plan::JobOutcome::Succeeded,
        // Archived: what the job did shows in Ganeti.
        (None, false) => plan::JobOutcome::Unknown,
    };
    // The instance the job made carries the application's tags; whatever the spec's
    // hostname says now, no other instance is taken for it.
    let found = match outcome {
        plan::JobOutcome::Failed(_) => Vec::new(),
        _ => marked(state, &cluster.name_any(), &client, app, &prefix).await?,
    };
    let status = plan::after_job(app, id, outcome, &found, &prefix, now);
    let host = status.instance_name.clone().unwrap_or_default();
    let created = status.phase == Phase::Created;
    let message = match (&status.ganeti_error, created) {
        (_, true) => format!(
            "instance {host} created on {}",
            status.primary_node.as_deref().unwrap_or("?")
        ),
        (Some(e), _) => format!("creating {host} failed: {}", e.message),
        (None, _) => format!("creating {host} failed"),
    };
    write_status(app, state, status).await?;
    let reason = if created { "Created" } else { "CreateFailed" };
    event(state, app, !created, reason, &message).await;
    Ok(Action::await_change())
}

/// When to look at an unfinished job again: soon for a young job, less often as it
/// ages, so many VMs being created at once do not flood RAPI with polls.
fn poll_delay(received_ts: Option<f64>) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let age = received_ts.map(|t| (now - t).max(0.0)).unwrap_or_default();
    Duration::from_secs_f64(age / 4.0).clamp(JOB_POLL, JOB_POLL_MAX)
}

/// Mails the applicant about the current phase. `Some(delay)`: SMTP failed transiently,
/// try again after it.
async fn mail_applicant(
    app: &mut InstanceApplication,
    kind: MailKind,
    state: &State,
) -> Result<Option<Duration>, Error> {
    let applicant = app.spec.applicant.clone().unwrap_or_default();
    let config = &state.ctx.config;
    let now = Timestamp::now();
    let Some(secret) = config.smtp_secret.as_deref() else {
        let status = plan::notified(
            app,
            kind,
            false,
            "mail is not configured (--smtp-secret)".into(),
            now,
        );
        write_status(app, state, status).await?;
        return Ok(None);
    };
    // A user may have several profiles (holders of system.users keep anyone's): the
    // first that yields an address wins, as for confirmation links.
    let profiles = Api::<UserProfile>::all(state.ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let address = profiles
        .iter()
        .filter(|p| p.spec.username == applicant)
        .find_map(|p| address_for(&applicant, Some(p), config.mail_unverified))
        .or_else(|| address_for(&applicant, None, config.mail_unverified));
    let Some(to) = address else {
        let message = format!("no verified address for {applicant}: add an email to their UserProfile");
        let status = plan::notified(app, kind, false, message, now);
        write_status(app, state, status).await?;
        return Ok(None);
    };
    let (subject, body) = plan::mail_text(app, kind);
    let sent = match Mailer::from_secret_ref(&state.ctx.client, &config.secrets_namespace, secret).await {
        Ok(mailer) => {
            mailer
                .send(&Mail {
                    to: to.clone(),
                    subject,
                    body,
                })
                .await
        }
        Err(e) => Err(e),
    };
    let status = match sent {
        Ok(()) => plan::notified(app, kind, true, format!("mailed {to}"), now),
        Err(e) if e.is_transient() => {
            tracing::warn!(application = %key(app), error = %e, "mailing the applicant failed; retrying");
            return Ok(Some(Duration::from_secs(30)));
        }
        Err(e) => plan::notified(app, kind, false, format!("mail to {to} failed: {e}"), now),
    };
    write_status(app, state, status).await?;
    Ok(None)
}

async fn event(state: &State, app: &InstanceApplication, warning: bool, reason: &str, note: &str) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = state.recorder.publish(&ev, &app.object_ref(&())).await {
        tracing::debug!(application = %key(app), error = %e, "publishing an Event failed");
    }
}

/// Stores `status` (server-side apply, the whole status) and keeps `app` current.
async fn write_status(
    app: &mut InstanceApplication,
    state: &State,
    status: InstanceApplicationStatus,
) -> Result<(), Error> {
    let api: Api<InstanceApplication> =
        Api::namespaced(state.ctx.client.clone(), &app.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "ganeti.dev/v1alpha1",
        "kind": "InstanceApplication",
        "status": status,
    });
    let stored = api
        .patch_status(
            &app.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    state
        .ctx
        .metrics
        .status_writes
        .with_label_values(&[CONTROLLER])
        .inc();
    tracing::debug!(application = %key(app), phase = ?status.phase, "status written");
    app.status = stored.status;
    app.metadata.resource_version = stored.metadata.resource_version;
    Ok(())
}
