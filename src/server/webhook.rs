//! The validating admission webhook: escalation prevention for Roles and RoleBindings,
//! as Kubernetes RBAC does it. Creating or changing a RoleBinding or Role is refused
//! unless the requester already holds every right it grants, over at least the objects
//! it reaches ([`AuthzIndex::may_grant`]); `system:masters`, members of the admin groups
//! until an administrator binding exists, and holders of an un-narrowed `administrator`
//! binding are exempt. A user's profile groups count as theirs. Deletions and changes that leave the
//! spec alone (labels, annotations, finalizers) grant nothing and pass.
//!
//! Served over TLS on its own listener (the API server only calls webhooks over HTTPS),
//! with a certificate and key read from files and re-read when they change, so a
//! rotating certificate (cert-manager, a mounted Secret) needs no restart.
//!
//! Roles and bindings are listed from the API server for every request rather than kept
//! in a cache: a binding removed a moment ago must no longer count as a right held, and
//! these requests are rare. If they cannot be read, the request is refused (fail closed).

use crate::api::profile::UserProfile;
use crate::api::{Role, RoleBinding};
use crate::authz::{AuthzIndex, Principal, Right};
use axum::{Json, Router, extract::State, routing::get, routing::post};
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Path the ValidatingWebhookConfiguration points at.
pub const VALIDATE_PATH: &str = "/validate/rbac";
/// Groups exempt from the check when none are configured.
pub const DEFAULT_ADMIN_GROUPS: &[&str] = &["ganeti-admins", "system:masters"];
/// The group that always passes (Kubernetes' own superusers).
pub const BREAK_GLASS_GROUP: &str = "system:masters";
/// How often the certificate files are checked for changes.
const CERT_RELOAD: Duration = Duration::from_secs(60);

/// What the handler needs.
#[derive(Clone)]
pub struct WebhookState {
    client: kube::Client,
    admin_groups: Arc<Vec<String>>,
}

impl WebhookState {
    pub fn new(client: kube::Client, admin_groups: Vec<String>) -> Self {
        Self {
            client,
            admin_groups: Arc::new(admin_groups),
        }
    }
}

/// The webhook's listener settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(VALIDATE_PATH, post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The request as the check needs it.
pub struct Review<'a> {
    pub operation: &'a Operation,
    pub kind: &'a str,
    pub user: &'a str,
    pub groups: &'a [String],
    pub object: Option<&'a serde_json::Value>,
    pub old_object: Option<&'a serde_json::Value>,
}

/// Allows or refuses one request (`Err` carries the message for the requester).
pub fn check(
    review: &Review<'_>,
    roles: &[Role],
    bindings: &[RoleBinding],
    admin_groups: &[String],
) -> Result<(), String> {
    if !matches!(review.operation, Operation::Create | Operation::Update) {
        return Ok(());
    }
    // system:masters bypasses Kubernetes authorization anyway; the admin groups count
    // until an administrator binding exists (the bootstrap the admission policies share).
    let bootstrap = !crate::authz::has_administrator_binding(bindings);
    if review.groups.iter().any(|g| g == BREAK_GLASS_GROUP)
        || (bootstrap && review.groups.iter().any(|g| admin_groups.contains(g)))
    {
        return Ok(());
    }
    let object = review.object.ok_or("the request carries no object")?;
    let spec_unchanged = review.operation == &Operation::Update
        && review
            .old_object
            .is_some_and(|old| old.get("spec") == object.get("spec"));
    if spec_unchanged {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let index = AuthzIndex::build(roles, bindings, []);
    let p = Principal::new(review.user, review.groups);
    let admins = admin_groups.join(", ");
    let refuse = |what: String, missing: Vec<Right>| {
        let rights: Vec<String> = missing.iter().map(Right::to_string).collect();
        format!(
            "you may not {what}: it grants {}, which you do not hold yourself over every object it reaches. \
             A Role or RoleBinding can only hand out rights its author holds (as Kubernetes RBAC does). \
             Leave those rights out, or ask an admin (groups: {admins}) to apply it.",
            rights.join(", ")
        )
    };
    match review.kind {
        "RoleBinding" => {
            let binding: RoleBinding = serde_json::from_value(object.clone())
                .map_err(|e| format!("not a valid RoleBinding: {e}"))?;
            let role = &binding.spec.role_ref;
            if index.find_role(role).is_none() {
                return Err(format!(
                    "you may not create RoleBinding {name:?}: its role {role:?} does not exist. Binding a role \
                     before it exists would hand out whatever it is later given; create the Role first \
                     (or ask an admin, groups: {admins})."
                ));
            }
            index
                .may_bind(&p, &binding.spec)
                .map_err(|missing| refuse(format!("bind role {role:?} with RoleBinding {name:?}"), missing))
        }
        "Role" => {
            let role: Role =
                serde_json::from_value(object.clone()).map_err(|e| format!("not a valid Role: {e}"))?;
            index
                .may_grant(&p, &role.spec, &[], &[])
                .map_err(|missing| refuse(format!("write Role {name:?}"), missing))
        }
        // The configuration sends only these two kinds; anything else is not ours to judge.
        _ => Ok(()),
    }
}

async fn validate(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            return Json(AdmissionResponse::invalid("an AdmissionReview without a request").into_review());
        }
    };
    let user = request.user_info.username.clone().unwrap_or_default();
    let mut groups = request.user_info.groups.clone().unwrap_or_default();
    let object = request.object.as_ref().map(serde_json::to_value).transpose();
    let old_object = request.old_object.as_ref().map(serde_json::to_value).transpose();
    let verdict = match (object, old_object, load(&state.client).await) {
        (Ok(object), Ok(old_object), Ok((roles, bindings, profiles))) => {
            // A user's profile groups count as theirs here as everywhere.
            for p in profiles.iter().filter(|p| p.spec.username == user) {
                groups.extend(p.spec.groups.iter().cloned());
            }
            check(
                &Review {
                    operation: &request.operation,
                    kind: &request.kind.kind,
                    user: &user,
                    groups: &groups,
                    object: object.as_ref(),
                    old_object: old_object.as_ref(),
                },
                &roles,
                &bindings,
                &state.admin_groups,
            )
        }
        (Err(e), _, _) | (_, Err(e), _) => Err(format!("the object could not be read: {e}")),
        (_, _, Err(e)) => Err(format!(
            "the operator could not read Roles and RoleBindings to check this request ({e}); try again"
        )),
    };
    tracing::info!(
        user = %user,
        operation = ?request.operation,
        kind = %request.kind.kind,
        name = %request.name,
        allowed = verdict.is_ok(),
        reason = verdict.as_ref().err().map(String::as_str).unwrap_or(""),
        "admission review"
    );
    let response = AdmissionResponse::from(&request);
    let response = match verdict {
        Ok(()) => response,
        Err(message) => {
            let mut denied = response.deny(message);
            denied.result.code = 403;
            denied.result.reason = "Forbidden".into();
            denied
        }
    };
    Json(response.into_review())
}

type Loaded = (Vec<Role>, Vec<RoleBinding>, Vec<UserProfile>);

async fn load(client: &kube::Client) -> Result<Loaded, kube::Error> {
    let lp = ListParams::default();
    let (roles, bindings, profiles) = (
        Api::<Role>::all(client.clone()),
        Api::<RoleBinding>::all(client.clone()),
        Api::<UserProfile>::all(client.clone()),
    );
    let (roles, bindings, profiles) = tokio::join!(roles.list(&lp), bindings.list(&lp), profiles.list(&lp));
    Ok((roles?.items, bindings?.items, profiles?.items))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves the webhook over TLS until `shutdown` resolves.
pub async fn serve(
    config: WebhookConfig,
    state: WebhookState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use axum_server::tls_rustls::RustlsConfig;
    let tls = RustlsConfig::from_pem_file(&config.cert, &config.key)
        .await
        .with_context(|| {
            format!(
                "reading the webhook certificate {} and key {}",
                config.cert.display(),
                config.key.display()
            )
        })?;
    let reload = {
        let (tls, cert, key) = (tls.clone(), config.cert.clone(), config.key.clone());
        tokio::spawn(async move {
            let mut seen = (modified(&cert), modified(&key));
            loop {
                tokio::time::sleep(CERT_RELOAD).await;
                let now = (modified(&cert), modified(&key));
                if now == seen {
                    continue;
                }
                match tls.reload_from_pem_file(&cert, &key).await {
                    Ok(()) => {
                        tracing::info!("webhook certificate reloaded");
                        seen = now;
                    }
                    // Half-written files: try again at the next check.
                    Err(e) => tracing::warn!(error = %e, "webhook certificate reload failed"),
                }
            }
        })
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    tracing::info!(addr = %config.listen, "admission webhook listening (TLS)");
    let served = super::listen::tls(config.listen, tls)
        .handle(handle)
        .serve(router(state).into_make_service())
        .await;
    reload.abort();
    served.context("admission webhook server")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::binding::RoleBindingSpec;
    use crate::api::common::{InstanceRef, Subject};
    use crate::api::role::{Permission, RoleSpec, Scope, ScopeKind, VmRight, VmRights};
    use serde_json::json;

    fn role(name: &str, rights: &[VmRight]) -> Role {
        let mut vms = VmRights::default();
        for r in rights {
            vms.set(*r, Some(Permission::Allowed));
        }
        Role::new(
            name,
            RoleSpec {
                description: None,
                vms: Some(vms),
                clusters: None,
                system: None,
                scope: Scope {
                    kind: ScopeKind::All,
                    ..Scope::default()
                },
            },
        )
    }

    fn binding(name: &str, role: &str, user: &str, instances: &[(&str, &str)]) -> RoleBinding {
        RoleBinding::new(
            name,
            RoleBindingSpec {
                role_ref: role.into(),
                subjects: vec![Subject::user(user)],
                clusters: vec![],
                instances: instances
                    .iter()
                    .map(|(c, n)| InstanceRef {
                        cluster: c.to_string(),
                        name: n.to_string(),
                    })
                    .collect(),
            },
        )
    }

    fn admins() -> Vec<String> {
        DEFAULT_ADMIN_GROUPS.iter().map(|g| g.to_string()).collect()
    }

    fn ask(
        op: Operation,
        user: &str,
        groups: &[&str],
        object: serde_json::Value,
        old: Option<serde_json::Value>,
    ) -> Result<(), String> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let kind = object["kind"].as_str().unwrap().to_owned();
        let roles = vec![
            role("power", &[VmRight::View, VmRight::Start, VmRight::Reboot]),
            role("destroy", &[VmRight::Destroy]),
        ];
        let bindings = vec![binding("carol-power", "power", "carol", &[("c1", "vm1")])];
        check(
            &Review {
                operation: &op,
                kind: &kind,
                user,
                groups: &groups,
                object: Some(&object),
                old_object: old.as_ref(),
            },
            &roles,
            &bindings,
            &admins(),
        )
    }

    fn value<T: serde::Serialize>(o: &T) -> serde_json::Value {
        serde_json::to_value(o).unwrap()
    }

    #[test]
    fn a_holder_may_pass_on_what_they_hold_and_no_more() {
        let ok = binding("bob-power", "power", "bob", &[("c1", "vm1")]);
        assert_eq!(ask(Operation::Create, "carol", &[], value(&ok), None), Ok(()));
        let wider = binding("bob-power", "power", "bob", &[("c1", "vm2")]);
        let msg = ask(Operation::Create, "carol", &[], value(&wider), None).unwrap_err();
        assert!(msg.contains("vms.view, vms.start, vms.reboot"), "{msg}");
        let destroy = binding("bob-destroy", "destroy", "bob", &[("c1", "vm1")]);
        let msg = ask(Operation::Create, "carol", &[], value(&destroy), None).unwrap_err();
        assert!(
            msg.contains("vms.destroy") && msg.contains("ganeti-admins"),
            "{msg}"
        );
        let advanced = binding("me", "advanced-user", "carol", &[]);
        let msg = ask(Operation::Create, "carol", &[], value(&advanced), None).unwrap_err();
        assert!(msg.contains("clusters.createVm"), "{msg}");
    }

    #[test]
    fn admins_pass_and_unknown_roles_are_refused() {
        let destroy = binding("bob-destroy", "destroy", "bob", &[]);
        assert_eq!(
            ask(
                Operation::Create,
                "admin",
                &["ganeti-admins"],
                value(&destroy),
                None
            ),
            Ok(())
        );
        assert_eq!(
            ask(
                Operation::Create,
                "root",
                &["system:masters"],
                value(&destroy),
                None
            ),
            Ok(())
        );
        let ghost = binding("x", "not-yet", "bob", &[]);
        let msg = ask(Operation::Create, "carol", &[], value(&ghost), None).unwrap_err();
        assert!(msg.contains("does not exist"), "{msg}");
    }

    #[test]
    fn roles_need_their_rights_and_metadata_changes_pass() {
        let r = role("mine", &[VmRight::Start]);
        let msg = ask(Operation::Create, "carol", &[], value(&r), None).unwrap_err();
        assert!(msg.contains("vms.start"), "{msg}");
        let mut labelled = value(&binding("bob-destroy", "destroy", "bob", &[]));
        let old = labelled.clone();
        labelled["metadata"]["labels"] = json!({"team": "x"});
        assert_eq!(ask(Operation::Update, "carol", &[], labelled, Some(old)), Ok(()));
        let gone = value(&binding("bob-destroy", "destroy", "bob", &[]));
        assert_eq!(ask(Operation::Delete, "carol", &[], gone, None), Ok(()));
    }
}
