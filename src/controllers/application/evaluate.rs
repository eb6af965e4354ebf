//! Pending: validate, check the quota and decide (see `plan::evaluate`), then record it.

use super::ganeti::catalog;
use super::plan::{self, Catalog, ClusterView, Pending};
use super::{PENDING_RESYNC, State, event, write_status};
use crate::api::application::InstanceApplication;
use crate::api::cluster::GanetiCluster;
use crate::api::conditions;
use crate::api::profile::UserProfile;
use crate::api::quota::ClusterQuota;
use crate::api::role::{ClusterRight, Role};
use crate::api::{RoleBinding, SubjectKind};
use crate::authz::{AuthzIndex, Principal, Request};
use crate::controllers::Error;
use crate::fault;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use std::time::Duration;

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
    let api: Api<GanetiCluster> = Api::all(state.ctx.shared.client.clone());
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
    let client = state.ctx.shared.clusters.client(&name);
    match (ready, client, state.ctx.shared.inventory.get(&name)) {
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
    let client = &state.ctx.shared.client;
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

pub(super) async fn evaluate(app: &mut InstanceApplication, state: &State) -> Result<Action, Error> {
    let client = &state.ctx.shared.client;
    let facts = cluster_facts(app, state).await?;
    let quotas = Api::<ClusterQuota>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let inventory = facts
        .as_ref()
        .and_then(|f| state.ctx.shared.inventory.get(&f.name));
    let self_approve = match &facts {
        Some(f)
            if !matches!(plan::decision_in_force(app), plan::InForce::Fresh(_))
                && !app.spec.adopts()
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
