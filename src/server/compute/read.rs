//! get, list and watch of instances and nodes (from the catalog), and of jobs (read
//! from Ganeti when asked).

use super::status::StatusError;
use super::{ComputeState, Proxied, json_answer, wants_table};
use crate::access::rules::Snapshot;
use crate::api::role::{SystemRight, VmRight};
use crate::authz::{Principal, Request};
use crate::compute::catalog::{Event, EventType, Expired, Judge, Object, Store};
use crate::compute::objects::{GanetiInstance, GanetiJob, GanetiNode};
use crate::compute::record::InstanceRecord;
use crate::compute::select::{FieldSelector, LabelSelector};
use crate::compute::table::{self, IncludeObject, Row};
use crate::compute::{GROUP_VERSION, split_name};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A watch without `timeoutSeconds` ends after this (clients watch again).
const WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListParams {
    #[serde(default)]
    label_selector: String,
    #[serde(default)]
    field_selector: String,
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
    include_object: Option<String>,
}

/// What a served kind adds to a catalog object.
trait Served: Object + Row {
    const LIST_KIND: &'static str;
    const FIELDS: &'static [&'static str];
    fn field(&self, field: &str) -> Option<&str>;
    /// Its labels, for a label selector (the catalog's VMs make theirs: asked only when
    /// there is a selector).
    fn labels(&self) -> Option<Cow<'_, BTreeMap<String, String>>>;
}

impl Served for InstanceRecord {
    const LIST_KIND: &'static str = "GanetiInstanceList";
    const FIELDS: &'static [&'static str] = &[
        "metadata.name",
        "spec.cluster",
        "status.instanceName",
        "status.primaryNode",
        "status.state",
    ];
    fn field(&self, field: &str) -> Option<&str> {
        Some(match field {
            "metadata.name" => self.name(),
            "spec.cluster" => self.cluster(),
            "status.instanceName" => self.instance_name(),
            "status.primaryNode" => self.primary_node(),
            "status.state" => self.state(),
            _ => return None,
        })
    }
    fn labels(&self) -> Option<Cow<'_, BTreeMap<String, String>>> {
        Some(Cow::Owned(self.label_map()))
    }
}

impl Served for GanetiNode {
    const LIST_KIND: &'static str = "GanetiNodeList";
    const FIELDS: &'static [&'static str] = &["metadata.name", "spec.cluster", "status.role"];
    fn field(&self, field: &str) -> Option<&str> {
        Some(match field {
            "metadata.name" => self.metadata.name.as_deref()?,
            "spec.cluster" => &self.spec.cluster,
            "status.role" => &self.status.role,
            _ => return None,
        })
    }
    fn labels(&self) -> Option<Cow<'_, BTreeMap<String, String>>> {
        self.metadata.labels.as_ref().map(Cow::Borrowed)
    }
}

/// The selectors and output of one request.
struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
    table: bool,
    include: IncludeObject,
}

impl Selection {
    fn parse<T: Served>(params: &ListParams, headers: &HeaderMap) -> Result<Self, StatusError> {
        Ok(Self {
            labels: LabelSelector::parse(&params.label_selector).map_err(StatusError::bad_request)?,
            fields: FieldSelector::parse(&params.field_selector, T::FIELDS)
                .map_err(StatusError::bad_request)?,
            table: wants_table(headers),
            include: IncludeObject::parse(params.include_object.as_deref())
                .map_err(StatusError::bad_request)?,
        })
    }

    fn matches<T: Served>(&self, o: &T) -> bool {
        (self.labels.is_empty() || self.labels.matches(o.labels().as_deref()))
            && self.fields.matches(|f| o.field(f))
    }
}

/// Who may see which object: decided on the snapshot the object comes from (for an
/// event, the rules it carries).
type Visible<T> = Arc<dyn Fn(&dyn Judge, &Principal<'_>, &str, &T) -> bool + Send + Sync>;

fn instance_visible() -> Visible<InstanceRecord> {
    Arc::new(|judge, p, cluster, o| {
        judge.allows(
            p,
            &Request::Vm {
                cluster,
                instance: o.instance_name(),
                right: VmRight::View,
            },
        )
    })
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// 503 until this replica has read a cluster and listed the rules.
async fn ready(state: &ComputeState) -> Result<Arc<Snapshot>, StatusError> {
    if !state.api.rules.ready().await {
        return Err(StatusError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "roles and bindings are not loaded yet on this replica; try again",
        ));
    }
    // As the JSON API: no inventory yet is "unknown", not "no VMs".
    state
        .catalog
        .snapshot()
        .filter(|s| !s.inventories().is_empty())
        .ok_or_else(|| {
            StatusError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no cluster inventory on this replica yet: its first read is under way",
            )
        })
}

/// `system.nodes` / `system.jobs` for the whole resource.
fn require(
    snapshot: &Snapshot,
    p: &Principal<'_>,
    right: SystemRight,
    plural: &'static str,
) -> Result<(), StatusError> {
    let decision = snapshot.index.decide(p, &Request::System(right));
    if decision.allowed {
        return Ok(());
    }
    Err(StatusError::new(
        StatusCode::FORBIDDEN,
        format!(
            "{plural}.{} is forbidden: missing right system.{} ({})",
            crate::compute::GROUP,
            right.as_str(),
            snapshot.index.describe(&decision)
        ),
    ))
}

pub(super) async fn list_instances(
    State(state): State<Arc<ComputeState>>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
) -> Result<Response, StatusError> {
    let snapshot = ready(&state).await?;
    let selection = Selection::parse::<InstanceRecord>(&params, &headers)?;
    let p = caller.principal();
    if is_watch(&params) {
        return watch(
            &state.catalog.instances,
            &params,
            selection,
            &caller,
            instance_visible(),
            snapshot,
        );
    }
    let (revision, clusters) = state.catalog.instances.list();
    let wanted = selection.fields.pinned("spec.cluster");
    let mut items: Vec<Arc<InstanceRecord>> = Vec::new();
    if let Some(name) = selection.fields.pinned("metadata.name") {
        if let Some((cluster, o)) = state.catalog.instances.get(name)
            && instance_visible()(&*snapshot, &p, &cluster, &o)
            && selection.matches(&*o)
        {
            items.push(o);
        }
    } else {
        let permitted = snapshot.index.permitted_instances(&p, VmRight::View);
        let by_cluster: HashMap<&str, &crate::compute::catalog::ClusterObjects<InstanceRecord>> =
            clusters.iter().map(|(c, o)| (&**c, o)).collect();
        let mut name = String::new();
        items.reserve(permitted.len());
        for (cluster, instance) in permitted {
            if wanted.is_some_and(|w| w != cluster) {
                continue;
            }
            let Some(objects) = by_cluster.get(cluster) else {
                continue;
            };
            crate::compute::write_object_name(&mut name, cluster, instance);
            if let Some(o) = objects.get(name.as_str())
                && selection.matches(&**o)
            {
                items.push(o.clone());
            }
        }
        items.sort_by(|a, b| a.name().cmp(b.name()));
    }
    Ok(answer_list(
        InstanceRecord::LIST_KIND,
        items.iter().map(|o| &**o),
        revision,
        &selection,
    ))
}

pub(super) async fn get_instance(
    State(state): State<Arc<ComputeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
) -> Result<Response, StatusError> {
    let snapshot = ready(&state).await?;
    let (cluster, o) = state
        .catalog
        .instances
        .get(&name)
        .filter(|(cluster, o)| instance_visible()(&*snapshot, &caller.principal(), cluster, o))
        .ok_or_else(|| StatusError::not_found(GanetiInstance::PLURAL, &name))?;
    let _ = cluster;
    Ok(answer_one(&*o, wants_table(&headers)))
}

pub(super) async fn list_nodes(
    State(state): State<Arc<ComputeState>>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
) -> Result<Response, StatusError> {
    let snapshot = ready(&state).await?;
    require(
        &snapshot,
        &caller.principal(),
        SystemRight::Nodes,
        GanetiNode::PLURAL,
    )?;
    let selection = Selection::parse::<GanetiNode>(&params, &headers)?;
    if is_watch(&params) {
        // The right was checked for the whole resource.
        return watch(
            &state.catalog.nodes,
            &params,
            selection,
            &caller,
            Arc::new(|_, _, _, _| true),
            snapshot,
        );
    }
    let (revision, clusters) = state.catalog.nodes.list();
    let items: Vec<&GanetiNode> = clusters
        .iter()
        .flat_map(|(_, objects)| objects.values().map(|o| &**o))
        .filter(|o| selection.matches(*o))
        .collect();
    Ok(answer_list(GanetiNode::LIST_KIND, items, revision, &selection))
}

pub(super) async fn get_node(
    State(state): State<Arc<ComputeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
) -> Result<Response, StatusError> {
    let snapshot = ready(&state).await?;
    require(
        &snapshot,
        &caller.principal(),
        SystemRight::Nodes,
        GanetiNode::PLURAL,
    )?;
    let (_, o) = state
        .catalog
        .nodes
        .get(&name)
        .ok_or_else(|| StatusError::not_found(GanetiNode::PLURAL, &name))?;
    Ok(answer_one(&*o, wants_table(&headers)))
}

/// Jobs are read from each cluster's queue when asked: the user's own (by the reason
/// trail), or all of them with `system.jobs`.
pub(super) async fn list_jobs(
    State(state): State<Arc<ComputeState>>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
) -> Result<Response, StatusError> {
    let snapshot = ready(&state).await?;
    if is_watch(&params) {
        return Err(StatusError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "ganetijobs cannot be watched: they are read from Ganeti's queue when listed",
        ));
    }
    let labels = LabelSelector::parse(&params.label_selector).map_err(StatusError::bad_request)?;
    let fields = FieldSelector::parse(
        &params.field_selector,
        &["metadata.name", "spec.cluster", "status.state"],
    )
    .map_err(StatusError::bad_request)?;
    let p = caller.principal();
    let all = snapshot
        .index
        .decide(&p, &Request::System(SystemRight::Jobs))
        .allowed;
    let clusters: Vec<String> = snapshot
        .inventories()
        .iter()
        .map(|i| i.cluster.clone())
        .filter(|c| fields.pinned("spec.cluster").is_none_or(|w| w == c))
        .collect();
    let reads = clusters.iter().map(|cluster| {
        let client = state.api.shared.clusters.client(cluster);
        async move {
            match client {
                Some(client) => (cluster, client.jobs().await),
                None => (
                    cluster,
                    Err(crate::rapi::RapiError::NotFound {
                        message: format!("no RAPI client for {cluster} yet"),
                    }),
                ),
            }
        }
    });
    let mut items = Vec::new();
    for (cluster, jobs) in futures::future::join_all(reads).await {
        let jobs = match jobs {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(%cluster, error = %e, "listing a cluster's jobs failed");
                continue;
            }
        };
        for job in jobs {
            if !all && !crate::access::action::submitted_by(&job, &caller.identity.user) {
                continue;
            }
            let o = GanetiJob::from_job(cluster, &job);
            let field = |f: &str| -> Option<&str> {
                Some(match f {
                    "metadata.name" => o.metadata.name.as_deref()?,
                    "spec.cluster" => &o.spec.cluster,
                    "status.state" => &o.status.state,
                    _ => return None,
                })
            };
            if labels.matches(o.metadata.labels.as_ref()) && fields.matches(field) {
                items.push(o);
            }
        }
    }
    let selection = Selection {
        labels,
        fields,
        table: wants_table(&headers),
        include: IncludeObject::parse(params.include_object.as_deref()).map_err(StatusError::bad_request)?,
    };
    Ok(answer_list("GanetiJobList", items.iter(), 0, &selection))
}

pub(super) async fn get_job(
    State(state): State<Arc<ComputeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Proxied(caller): Proxied,
) -> Result<Response, StatusError> {
    let snapshot = ready(&state).await?;
    let not_found = || StatusError::not_found(GanetiJob::PLURAL, &name);
    let (cluster, id) =
        split_name(&name, snapshot.inventories().iter().map(|i| i.cluster.as_str())).ok_or_else(not_found)?;
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let client = state.api.shared.clusters.client(cluster).ok_or_else(not_found)?;
    let job = match client.job(crate::rapi::JobId(id)).await {
        Ok(job) => job,
        Err(crate::rapi::RapiError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(StatusError::new(StatusCode::BAD_GATEWAY, format!("Ganeti: {e}"))),
    };
    if !crate::access::action::submitted_by(&job, &caller.identity.user) {
        require(
            &snapshot,
            &caller.principal(),
            SystemRight::Jobs,
            GanetiJob::PLURAL,
        )?;
    }
    Ok(answer_one(
        &GanetiJob::from_job(cluster, &job),
        wants_table(&headers),
    ))
}

fn is_watch(params: &ListParams) -> bool {
    matches!(params.watch.as_deref(), Some("true" | "1"))
}

fn answer_one<T: Row>(o: &T, table: bool) -> Response {
    if table {
        json_answer(
            table::table([o], IncludeObject::Metadata, None, true, now()),
            true,
        )
    } else {
        json_answer(serde_json::to_value(o).unwrap_or(Value::Null), false)
    }
}

fn answer_list<'a, T: Row + 'a>(
    kind: &str,
    items: impl IntoIterator<Item = &'a T>,
    revision: u64,
    selection: &Selection,
) -> Response {
    /// A list, written out as it is serialised (no `Value` tree of its items).
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List<'a, T> {
        api_version: &'static str,
        kind: &'a str,
        metadata: ListMeta<'a>,
        items: Vec<&'a T>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ListMeta<'a> {
        resource_version: &'a str,
    }
    let rv = revision.to_string();
    let (body, content_type) = if selection.table {
        let t = table::Table::new(items, selection.include, Some(rv), true, now());
        (t.to_vec(), super::TABLE_CONTENT_TYPE)
    } else {
        let list = List {
            api_version: GROUP_VERSION,
            kind,
            metadata: ListMeta {
                resource_version: &rv,
            },
            items: items.into_iter().collect(),
        };
        (serde_json::to_vec(&list), "application/json")
    };
    match body {
        Ok(body) => ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => StatusError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("serialising the list: {e}"),
        )
        .into_response(),
    }
}

/// A watch: the events after `resourceVersion` (or every visible object as ADDED
/// when none is given), then live events, each decided for the caller on the
/// snapshot it comes from, as newline-separated JSON.
fn watch<T: Served>(
    store: &Store<T>,
    params: &ListParams,
    selection: Selection,
    caller: &super::Caller,
    visible: Visible<T>,
    snapshot: Arc<Snapshot>,
) -> Result<Response, StatusError> {
    let from =
        match params.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                StatusError::bad_request(format!("resourceVersion {rv:?} is not one of ours"))
            })?),
        };
    let start = store.watch(from).map_err(|Expired { oldest }| {
        StatusError::new(
            StatusCode::GONE,
            format!(
                "too old resource version: {} ({oldest})",
                from.unwrap_or_default()
            ),
        )
    })?;
    // Without a version: the current objects first, as ADDED (after subscribing, so
    // nothing falls in between; live events at or before the list are skipped).
    let (listed_at, initial) = match from {
        Some(rv) => (rv, Vec::new()),
        None => {
            let (revision, clusters) = store.list();
            let objects: Vec<(Arc<str>, Arc<T>)> = clusters
                .into_iter()
                .flat_map(|(c, objects)| {
                    objects
                        .values()
                        .map(move |o| (c.clone(), o.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            (revision, objects)
        }
    };
    let user = caller.identity.user.clone();
    let groups = caller.groups.clone();
    let timeout = params
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(WATCH_TIMEOUT);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    let mut live = start.live;
    let backlog = start.backlog;
    tokio::spawn(async move {
        let p = Principal::new(&user, &groups);
        let mut first = true;
        let mut line = |kind: EventType, cluster: &str, o: &T, judge: &dyn Judge| -> Option<String> {
            if !selection.matches(o) || !visible(judge, &p, cluster, o) {
                return None;
            }
            let object = if selection.table {
                table::table([o], selection.include, None, std::mem::take(&mut first), now())
            } else {
                serde_json::to_value(o).unwrap_or(Value::Null)
            };
            Some(json!({"type": kind, "object": object}).to_string() + "\n")
        };
        if !initial.is_empty() {
            for (cluster, o) in &initial {
                if let Some(l) = line(EventType::Added, cluster, o, &*snapshot)
                    && tx.send(Ok(l)).await.is_err()
                {
                    return;
                }
            }
        }
        for e in &backlog {
            if let Some(l) = line(e.kind, &e.cluster, &e.object, &*e.rules)
                && tx.send(Ok(l)).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let event: Arc<Event<T>> = tokio::select! {
                received = live.recv() => match received {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let gone = super::status::StatusError::new(StatusCode::GONE, "the watch fell behind; list again");
                        let _ = tx.send(Ok(json!({"type": "ERROR", "object": gone.to_json()}).to_string() + "\n")).await;
                        return;
                    }
                    Err(_) => return,
                },
                () = &mut deadline => return,
                () = tx.closed() => return,
            };
            if event.revision <= listed_at {
                continue;
            }
            if let Some(l) = line(event.kind, &event.cluster, &event.object, &*event.rules)
                && tx.send(Ok(l)).await.is_err()
            {
                return;
            }
        }
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}
