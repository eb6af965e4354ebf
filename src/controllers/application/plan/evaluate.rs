//! Evaluating a Pending (or edited Rejected/Failed) application: validation, quota and
//! the decision in force.

use super::validate::validate;
use super::{
    ClusterView, DECIDED, Evaluation, INSTANCE_CREATED, InForce, Note, Pending, QUOTA_EXCEEDED, VALIDATED,
    applicant, decider, decision_in_force, owner_tag,
};
use crate::api::application::{
    DecisionRecord, InstanceApplication, InstanceApplicationStatus, Phase, Verdict,
};
use crate::api::conditions::{self, Status};
use crate::inventory::{ClusterInventory, Instance};
use crate::quota;

/// A warning about the decision, said once per change of its message, not on every
/// resync.
fn decided_warning_once(app: &InstanceApplication, reason: &'static str, message: String) -> Option<Note> {
    let previous = app
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, DECIDED));
    previous.is_none_or(|c| c.message != message).then_some(Note {
        warning: true,
        reason,
        message,
    })
}

/// The record of the decision in force after an evaluation: kept while it is the same
/// decision, stamped with the current generation when it is new.
fn decision_record(app: &InstanceApplication) -> Option<DecisionRecord> {
    let decision = app.spec.decision.as_ref()?;
    match app.status.as_ref().and_then(|s| s.decided.as_ref()) {
        Some(r) if &r.decision == decision => Some(r.clone()),
        _ => Some(DecisionRecord {
            generation: app.metadata.generation.unwrap_or_default(),
            decision: decision.clone(),
        }),
    }
}

/// Decides a Pending (or edited Rejected/Failed) application.
pub fn evaluate(p: &Pending<'_>) -> Evaluation {
    let app = p.app;
    let generation = app.metadata.generation;
    let now = p.now;
    let mut status = app.status.clone().unwrap_or_default();
    let reevaluated = status.phase != Phase::Pending;
    let in_force = decision_in_force(app);
    // A fresh attempt: nothing of a previous one (job, Ganeti's error) applies any more.
    status.phase = Phase::Pending;
    status.observed_generation = generation;
    status.decided = decision_record(app);
    status.approved_generation = None;
    status.job_id = None;
    status.ganeti_error = None;
    status.instance_name = None;
    status.instance_uuid = None;
    status.primary_node = None;
    status.ips.clear();
    status.created_time = None;
    conditions::remove(&mut status.conditions, INSTANCE_CREATED);
    let set = |status: &mut InstanceApplicationStatus, type_: &str, s: Status, reason: &str, msg: String| {
        conditions::set(&mut status.conditions, type_, s, reason, msg, generation, now);
    };
    let mut note = None;
    let retried = reevaluated.then(|| Note {
        warning: false,
        reason: "Resubmitted",
        message: "the application changed; evaluating it again".to_string(),
    });

    // A rejection stands even over a changed spec: only an admin turns it round.
    if let InForce::Fresh(d) | InForce::Stale { decision: d, .. } = in_force
        && d.verdict == Verdict::Rejected
    {
        status.phase = Phase::Rejected;
        let why = d.reason.as_deref().unwrap_or("no reason given");
        let message = format!("rejected by {}: {why}", decider(app));
        set(&mut status, DECIDED, Status::True, "Rejected", message.clone());
        return Evaluation {
            status,
            approved: false,
            note: Some(Note {
                warning: false,
                reason: "Rejected",
                message,
            }),
        };
    }

    // Ok: the VM to adopt (mode Adopt), or nothing (mode Create).
    let validation = if app.spec.adopts() {
        super::adopt::validate_adopt(app, &p.cluster, p.applications).map(Some)
    } else {
        validate(app, &p.cluster, p.applications).map(|()| None)
    };
    status.cluster = match p.cluster {
        ClusterView::Unchosen => None,
        ClusterView::Missing(name) | ClusterView::NotReady { name, .. } | ClusterView::Ready { name, .. } => {
            Some(name.to_string())
        }
    };
    match &validation {
        Ok(None) => set(
            &mut status,
            VALIDATED,
            Status::True,
            "Valid",
            "the cluster is ready and allows what the application asks for".into(),
        ),
        Ok(Some(vm)) => set(
            &mut status,
            VALIDATED,
            Status::True,
            "Valid",
            format!("instance {} (UUID {}) exists and has no owner", vm.name, vm.uuid),
        ),
        Err((reason, message)) => set(&mut status, VALIDATED, Status::False, reason, message.clone()),
    }

    // Quota: only meaningful once the cluster is known and read.
    let fits = match p.cluster {
        ClusterView::Ready { name, inventory, .. } => {
            let created = created_since_read(name, inventory, p.applications);
            let instances: std::borrow::Cow<'_, [Instance]> = if created.is_empty() {
                (&inventory.instances[..]).into()
            } else {
                [&inventory.instances[..], &created[..]].concat().into()
            };
            match quota::check_application(p.quotas, &instances, p.applications, app, |i| {
                inventory.owner_of(i)
            }) {
                Ok(verdict) => {
                    status.quota = Some(verdict.to_status());
                    let reason = if verdict.fits {
                        "WithinQuota"
                    } else {
                        "QuotaExceeded"
                    };
                    set(
                        &mut status,
                        QUOTA_EXCEEDED,
                        Status::from(!verdict.fits),
                        reason,
                        verdict.message.clone(),
                    );
                    verdict.fits
                }
                Err(e) => {
                    status.quota = None;
                    set(
                        &mut status,
                        QUOTA_EXCEEDED,
                        Status::Unknown,
                        "InvalidQuota",
                        e.to_string(),
                    );
                    false
                }
            }
        }
        _ => {
            status.quota = None;
            conditions::remove(&mut status.conditions, QUOTA_EXCEEDED);
            false
        }
    };
    let quota_message = || {
        conditions::get(&status.conditions, QUOTA_EXCEEDED)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };

    let approved_by_admin = matches!(in_force, InForce::Fresh(d) if d.verdict == Verdict::Approved);
    let stale_approval = match in_force {
        InForce::Stale { decision, generation } if decision.verdict == Verdict::Approved => Some(format!(
            "the application changed after {} approved generation {generation}; an approval covers only the spec it was given for, so an admin must decide again (set spec.decision anew, with a new reason)",
            decision.decided_by.as_deref().unwrap_or("an admin")
        )),
        _ => None,
    };
    // Least privilege: `clusters.createVm` creates VMs; it never takes existing ones.
    let may_self_approve = p.may_self_approve && !app.spec.adopts();
    let approved = validation.is_ok() && fits && (approved_by_admin || may_self_approve);
    if approved {
        status.phase = Phase::Approved;
        status.approved_generation = generation;
        match &validation {
            // The VM to adopt is the one this name is now, by its UUID, whatever it is
            // called later.
            Ok(Some(vm)) => {
                status.instance_name = Some(vm.name.clone());
                status.instance_uuid = Some(vm.uuid.clone());
            }
            // The name to create, fixed with the approval: the spec may change later.
            _ => status.instance_name = Some(app.spec.hostname.clone()),
        }
        let (reason, message) = if approved_by_admin {
            ("Approved", format!("approved by {}", decider(app)))
        } else {
            (
                "AutoApproved",
                format!(
                    "{} holds clusters.createVm on this cluster and the VM fits the quota",
                    applicant(app)
                ),
            )
        };
        set(&mut status, DECIDED, Status::True, reason, message.clone());
        note = Some(Note {
            warning: false,
            reason,
            message,
        });
    } else if let Err((reason, why)) = &validation
        && approved_by_admin
        && super::adopt::conflict_ends_approval(reason)
    {
        // Someone else's VM (or one being adopted): the approval ends here, and nothing
        // is written; it is never carried out later, when the VM may be another's.
        let message = format!("not adopted: {why}");
        status.phase = Phase::Failed;
        status.ganeti_error = Some(crate::api::application::GanetiError {
            message: why.clone(),
            code: None,
        });
        set(
            &mut status,
            DECIDED,
            Status::False,
            "ApprovalRefused",
            format!("the approval by {} cannot be carried out: {why}", decider(app)),
        );
        set(
            &mut status,
            INSTANCE_CREATED,
            Status::False,
            reason,
            message.clone(),
        );
        note = Some(Note {
            warning: true,
            reason,
            message,
        });
    } else if approved_by_admin {
        let why = match &validation {
            Err((_, message)) => message.clone(),
            Ok(_) => quota_message(),
        };
        let message = format!("the approval by {} cannot be carried out: {why}", decider(app));
        let reason = if validation.is_ok() {
            "ApprovalRefused"
        } else {
            "ApprovalWaiting"
        };
        set(&mut status, DECIDED, Status::False, reason, message.clone());
        note = decided_warning_once(app, reason, message).or(note);
    } else if let Some(message) = stale_approval {
        set(
            &mut status,
            DECIDED,
            Status::False,
            "ChangedAfterApproval",
            message.clone(),
        );
        note = decided_warning_once(app, "ChangedAfterApproval", message).or(note);
    } else {
        let message = match (&validation, fits) {
            (Err(_), _) => {
                "waiting for an admin; the application cannot be carried out as it is (see Validated)".into()
            }
            (Ok(_), false) => {
                "waiting for an admin; it does not fit the quota as it is (see QuotaExceeded)".into()
            }
            (Ok(_), true) => "waiting for an admin to approve or reject it".to_string(),
        };
        set(&mut status, DECIDED, Status::False, "AwaitingDecision", message);
    }
    Evaluation {
        status,
        approved,
        note: note.or(retried),
    }
}

/// VMs that applications created after the inventory's bulk read started, and which it
/// therefore may not show: they hold their owners' quota all the same. (An older
/// Created application whose VM is absent had its VM removed since: it holds nothing.)
fn created_since_read(
    cluster: &str,
    inventory: &ClusterInventory,
    applications: &[InstanceApplication],
) -> Vec<Instance> {
    let Some(read_started) = inventory.read_started else {
        return Vec::new();
    };
    applications
        .iter()
        .filter_map(|a| {
            let status = a.status.as_ref()?;
            let name = status.instance_name.as_deref().unwrap_or(&a.spec.hostname);
            let fresh = !a.spec.adopts()
                && status.phase == Phase::Created
                && status.cluster.as_deref() == Some(cluster)
                && status.created_time.as_ref().is_some_and(|t| t.0 >= read_started)
                && inventory.instance(name).is_none();
            if !fresh {
                return None;
            }
            let request = quota::Request::from_application(a).unwrap_or_default();
            Some(Instance {
                name: name.to_string(),
                vcpus: u32::try_from(request.vcpus).unwrap_or(u32::MAX),
                memory_mib: request.memory.mebibytes_ceil(),
                disk_mib: request.disk.mebibytes_ceil(),
                tags: owner_tag(a, &inventory.tag_prefix).into_iter().collect(),
                ..Default::default()
            })
        })
        .collect()
}
