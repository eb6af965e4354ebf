//! `POST /instances/{cluster}/{name}/{action}`: an action on a VM, decided by
//! [`crate::access`] on the VM as Ganeti has it now, and submitted pinned to its UUID.
//! Fatal actions mail a confirmation link instead (see [`super::links`]).

use super::{ApiError, ApiState, Attempt, Caller, Outcome, PREFIX, rapi_error};
use crate::access::action::{self, Action, Plan, ResizePlan, TagsPlan};
use crate::access::{Pinned, VmRef};
use crate::api::quantity::Bytes as Size;
use crate::api::{ClusterQuota, InstanceApplication};
use crate::inventory::Instance;
use crate::quota::{Request, Resize};
use crate::rapi::{InstanceReinstall, InstanceResize, JobId, RapiClient, RapiError, ResizeBeparams, Target};
use crate::server::confirm::{self, Claims};
use crate::signed::now_secs;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::api::{Api, ListParams};
use serde_json::json;
use std::sync::Arc;

/// Submits the planned job for `pinned`: the UUID travels in the body wherever RAPI
/// lets it (see [`crate::rapi::Target`]).
pub(super) async fn submit(
    client: &RapiClient,
    pinned: &Pinned,
    user: &str,
    action: Action,
    plan: &Plan,
) -> Result<JobId, RapiError> {
    let why = action::reason(user, action);
    let target = Target::pinned(&pinned.name, &pinned.uuid);
    match plan {
        Plan::Startup => client.startup_instance(target, &why).await,
        Plan::Shutdown(timeout) => client.shutdown_instance(target, *timeout, &why).await,
        Plan::Reboot(kind) => client.reboot_instance(target, *kind, &why).await,
        Plan::Migrate(req) => client.migrate_instance(target, req, &why).await,
        Plan::ReplaceDisks(req) => client.replace_instance_disks(target, req, &why).await,
        Plan::Export(req) => client.export_instance(target, req, &why).await,
        // No DNS check: Ganeti would rename to whatever the resolver answers, not the
        // name the user confirmed (and a new VM's name is often not in DNS yet).
        Plan::Rename(new_name) => client.rename_instance(target, new_name, false, false, &why).await,
        Plan::Reinstall(os) => {
            let req = InstanceReinstall {
                os: os.clone(),
                start: Some(true),
                osparams: None,
            };
            client.reinstall_instance(target, &req, &why).await
        }
        Plan::Destroy => client.remove_instance(target, &why).await,
        Plan::Resize(ResizePlan::Parameters { vcpus, memory_mib }) => {
            let req = InstanceResize {
                beparams: ResizeBeparams {
                    vcpus: *vcpus,
                    maxmem: *memory_mib,
                    minmem: *memory_mib,
                },
            };
            client.resize_instance(target, &req, &why).await
        }
        Plan::Resize(ResizePlan::GrowDisk { index, by_mib }) => {
            client.grow_instance_disk(target, *index, *by_mib, &why).await
        }
        // RAPI's tag calls take a name only: the exact read of the decision, just
        // before, is what pins them.
        Plan::Tags(TagsPlan::Add(tags)) => {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            client.add_instance_tags(&pinned.name, &tags, &why).await
        }
        Plan::Tags(TagsPlan::Remove(tags)) => {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            client.remove_instance_tags(&pinned.name, &tags, &why).await
        }
        Plan::Flag { tag, on: true } => client.add_instance_tags(&pinned.name, &[tag], &why).await,
        Plan::Flag { tag, on: false } => client.remove_instance_tags(&pinned.name, &[tag], &why).await,
    }
}

/// Checks that need the VM and the cluster: a resize fits the owner's quota, tags stay
/// out of the reserved namespaces. `Ok` carries what the answer adds (a resize says
/// whether the VM must reboot for it to take effect).
pub(in crate::server) async fn check_with_vm(
    state: &ApiState,
    pinned: &Pinned,
    plan: &Plan,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let mut extra = serde_json::Map::new();
    match plan {
        Plan::Tags(TagsPlan::Add(tags) | TagsPlan::Remove(tags)) => {
            let inventory = state.known_cluster(&pinned.cluster)?;
            for tag in tags {
                crate::tags::check_user_tag(tag, &inventory.tag_prefix)
                    .map_err(|why| ApiError::new(StatusCode::FORBIDDEN, why))?;
            }
        }
        Plan::Resize(resize) => {
            let current = &pinned.instance;
            const MIB: u64 = 1 << 20;
            let new_size = match resize {
                ResizePlan::Parameters { vcpus, memory_mib } => {
                    let changes = vcpus.is_some_and(|v| v != current.vcpus)
                        || memory_mib.is_some_and(|m| m != current.memory_mib);
                    // Ganeti applies new backend parameters at the next start.
                    extra.insert("needsReboot".into(), json!(changes && current.running));
                    Request {
                        vcpus: u64::from(vcpus.unwrap_or(current.vcpus)),
                        memory: Size(memory_mib.unwrap_or(current.memory_mib) * MIB),
                        disk: Size(current.disk_mib * MIB),
                    }
                }
                ResizePlan::GrowDisk { by_mib, .. } => {
                    extra.insert("needsReboot".into(), json!(false));
                    Request {
                        vcpus: u64::from(current.vcpus),
                        memory: Size(current.memory_mib * MIB),
                        disk: Size((current.disk_mib + by_mib) * MIB),
                    }
                }
            };
            let Some(owner) = &pinned.owner else {
                // No owner, no quota to count against: only admins and explicit grants
                // reach an unowned VM.
                extra.insert("quota".into(), json!("the VM has no owner: no quota applies"));
                return Ok(extra);
            };
            let inventory = state.known_cluster(&pinned.cluster)?;
            let client = state.shared.client.clone();
            let lp = ListParams::default();
            let (quota_api, application_api) = (
                Api::<ClusterQuota>::all(client.clone()),
                Api::<InstanceApplication>::all(client),
            );
            let (quotas, applications) = tokio::try_join!(quota_api.list(&lp), application_api.list(&lp))?;
            // The VM as read just now, in place of the last sync's copy.
            let mut instances: Vec<Instance> = inventory
                .instances
                .iter()
                .filter(|i| i.uuid != current.uuid)
                .cloned()
                .collect();
            instances.push(current.clone());
            let verdict = crate::quota::check_resize(
                &quotas.items,
                &pinned.cluster,
                &instances,
                &applications.items,
                &Resize {
                    owner,
                    instance_uuid: &current.uuid,
                    new_size,
                },
                |i| inventory.owner_of(i),
            )
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, format!("the quota cannot be checked: {e}")))?;
            if !verdict.fits {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("over quota: {}", verdict.message),
                ));
            }
            extra.insert("quota".into(), json!(verdict.message));
        }
        Plan::Flag { tag, on } => {
            if pinned.instance.tags.iter().any(|t| t == tag) == *on {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{} already {} {tag}",
                        pinned.name,
                        if *on { "has" } else { "has no" }
                    ),
                ));
            }
            if *tag == action::ISOLATE_TAG {
                // ganetimgr's node hooks read the tag when the VM starts or migrates.
                extra.insert(
                    "note".into(),
                    json!("the nodes' network hooks apply isolation when the VM next starts or migrates"),
                );
            }
        }
        _ => {}
    }
    Ok(extra)
}

/// A rename must not take a name that shadows another VM's (see
/// [`crate::access::check_rename`]); checked on Ganeti's current list of names.
pub(super) async fn check_rename(client: &RapiClient, pinned: &Pinned, plan: &Plan) -> Result<(), ApiError> {
    let Plan::Rename(new_name) = plan else {
        return Ok(());
    };
    let names = client.instance_names().await.map_err(|e| rapi_error(&e))?;
    crate::access::check_rename(&pinned.name, new_name, names.iter().map(String::as_str))
        .map_err(|why| ApiError::new(StatusCode::CONFLICT, why))
}

pub(super) async fn act(
    State(state): State<Arc<ApiState>>,
    Path((cluster, name, action)): Path<(String, String, String)>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(action) = Action::parse(&action) else {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "unknown action {action:?}; one of {}",
            known.join(", ")
        )));
    };
    let vm = VmRef {
        cluster: &cluster,
        name: &name,
        uuid: None,
    };
    match perform(&state, &caller, vm, action, &body).await {
        Ok(Performed::Done(answer)) => Ok(Json(answer).into_response()),
        Ok(Performed::Confirm(response)) => Ok(response),
        Err(Refused::Api(e)) => Err(e),
        Err(Refused::RateLimited(wait)) => Ok(super::too_many(wait, "too many actions")),
    }
}

/// What [`perform`] did.
pub(in crate::server) enum Performed {
    /// The job was submitted: the answer (job id, and what the checks add).
    Done(serde_json::Value),
    /// A fatal action: a confirmation link was mailed (the 202 to answer).
    Confirm(Response),
}

/// Why [`perform`] did nothing (audited).
pub(in crate::server) enum Refused {
    Api(ApiError),
    RateLimited(std::time::Duration),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

/// One action on one VM, for the JSON API and the aggregated API alike: planned from
/// `body`, rate-limited, decided on the VM as Ganeti has it now (pinned to `vm.uuid`
/// when given), checked, and submitted; a fatal one mails a confirmation link instead.
/// When the job ends, the VM is read again, so the inventory (and every watch) sees
/// the outcome before the next sync.
pub(in crate::server) async fn perform(
    state: &Arc<ApiState>,
    caller: &Caller,
    vm: VmRef<'_>,
    action: Action,
    body: &[u8],
) -> Result<Performed, Refused> {
    let (cluster, name) = (vm.cluster, vm.name);
    let attempt = Attempt {
        action: action.as_str(),
        cluster,
        vm: name,
        uuid: vm.uuid,
    };
    let plan = action::plan(action, body).map_err(ApiError::bad_request)?;
    state
        .take_action_token(caller, &attempt)
        .map_err(Refused::RateLimited)?;
    let (pinned, client) = state
        .authorize(caller, vm, action.as_str(), action.right())
        .await?;
    let attempt = Attempt {
        uuid: Some(&pinned.uuid),
        ..attempt
    };
    if let Err(e) = check_rename(&client, &pinned, &plan).await {
        state.audit(caller, &attempt, &Outcome::Refused(e.1.clone()));
        return Err(e.into());
    }
    if action.is_fatal() {
        let response = request_confirmation(state, caller, &attempt, &pinned, action, plan).await?;
        return Ok(Performed::Confirm(response));
    }
    let extra = match check_with_vm(state, &pinned, &plan).await {
        Ok(extra) => extra,
        Err(e) => {
            state.audit(caller, &attempt, &Outcome::Refused(e.1.clone()));
            return Err(e.into());
        }
    };
    match submit(&client, &pinned, &caller.identity.user, action, &plan).await {
        Ok(job) => {
            state.audit(caller, &attempt, &Outcome::Done { job: job.0 });
            refresh_after(
                state.shared.inventory.clone(),
                client,
                cluster.to_string(),
                pinned.name.clone(),
                job,
            );
            let mut answer = json!({
                "job": job.0, "cluster": cluster, "instance": name, "uuid": pinned.uuid,
                "action": action.as_str(),
            });
            if let Some(object) = answer.as_object_mut() {
                object.extend(extra);
            }
            Ok(Performed::Done(answer))
        }
        Err(e) => {
            state.audit(caller, &attempt, &Outcome::Refused(format!("Ganeti: {e}")));
            Err(rapi_error(&e).into())
        }
    }
}

/// How long a job is followed for the refresh after it.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Reads the VM again once `job` ends and puts it in the inventory: what users see
/// (and watch) follows their action at once, not at the next sync.
fn refresh_after(
    inventory: crate::inventory::Inventory,
    client: Arc<RapiClient>,
    cluster: String,
    name: String,
    job: JobId,
) {
    tokio::spawn(async move {
        let _ = client.wait_job(job, REFRESH_WAIT).await;
        match crate::access::read_exact(&client, &name).await {
            Ok(Some(instance)) => inventory.upsert_instance(&cluster, instance),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, %cluster, vm = %name, "reading a VM after its job failed"),
        }
    });
}

/// 202: a confirmation link is on its way to the caller.
async fn request_confirmation(
    state: &ApiState,
    caller: &Caller,
    attempt: &Attempt<'_>,
    pinned: &Pinned,
    action: Action,
    plan: Plan,
) -> Result<Response, ApiError> {
    let config = &state.shared.config;
    let (Some(smtp), Some(public_url)) = (config.smtp_secret.as_deref(), config.public_url.as_deref()) else {
        return Err(ApiError::unavailable(
            "confirmation mails are not configured (--smtp-secret and --public-url)",
        ));
    };
    // A user may have several profiles (admins keep anyone's): the first that yields an
    // address wins, else the username when it is an address.
    let snapshot = state.rules.current();
    let user = caller.identity.user.as_str();
    let address = snapshot
        .profiles
        .iter()
        .filter(|p| p.spec.username == user)
        .find_map(|p| crate::mail::address_for(user, Some(p), config.mail_unverified))
        .or_else(|| crate::mail::address_for(user, None, config.mail_unverified));
    let Some(to) = address else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no verified email address for you: set and verify one in your UserProfile",
        ));
    };
    let (new_name, os) = match plan {
        Plan::Rename(n) => (Some(n), None),
        Plan::Reinstall(os) => (None, os),
        _ => (None, None),
    };
    let claims = Claims {
        user: caller.identity.user.clone(),
        groups: caller.identity.groups.clone(),
        cluster: attempt.cluster.to_string(),
        instance: pinned.name.clone(),
        uuid: pinned.uuid.clone(),
        action: action.as_str().to_string(),
        new_name,
        os,
        nonce: crate::signed::nonce(),
        expires: now_secs() + confirm::CONFIRM_TTL_SECS,
    };
    let link = format!(
        "{}{PREFIX}/confirm?token={}",
        public_url.trim_end_matches('/'),
        confirm::sign(&state.shared.keys.confirm_links, &claims)
    );
    let what = match &claims.new_name {
        Some(n) => format!("rename {} to {n}", attempt.vm),
        None => format!("{} {}", action.as_str(), attempt.vm),
    };
    let minutes = confirm::CONFIRM_TTL_SECS / 60;
    let mail = crate::mail::Mail {
        to,
        subject: format!("Confirm: {what}"),
        body: format!(
            "You asked to {what} (cluster {}, Ganeti UUID {}).\n\nTo go ahead, open this link within {minutes} \
             minutes:\n\n{link}\n\nThe link works once, and only for this VM: if it is renamed or replaced \
             meanwhile, the link does nothing. If you did not ask for this, ignore this mail.\n",
            attempt.cluster, pinned.uuid,
        ),
    };
    let mailer = crate::mail::Mailer::from_secret_ref(&state.shared.client, &config.secrets_namespace, smtp)
        .await
        .map_err(|e| ApiError::unavailable(format!("mail is not available: {e}")))?;
    if let Err(e) = mailer.send(&mail).await {
        tracing::warn!(error = %e, "mailing a confirmation link failed");
        return Err(ApiError::unavailable(
            "the confirmation mail could not be sent; try again",
        ));
    }
    state.audit(caller, attempt, &Outcome::Mailed);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "message": format!("a confirmation link was mailed to you; it expires in {minutes} minutes"),
            "cluster": attempt.cluster, "instance": attempt.vm, "uuid": pinned.uuid, "action": action.as_str(),
        })),
    )
        .into_response())
}
