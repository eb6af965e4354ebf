//! The applicant's mails: which is owed, what it says, and that it was done with.

use super::{APPLICANT_NOTIFIED, DECIDED, applicant, approved_name};
use crate::api::application::{InstanceApplication, InstanceApplicationStatus, Phase};
use crate::api::conditions::{self, Status};
use k8s_openapi::jiff::Timestamp;

/// The mail the applicant is owed, if any: one per phase they care about and spec
/// generation. `Creating` is still "approved" to them.
pub fn mail_due(app: &InstanceApplication) -> Option<MailKind> {
    let status = app.status.as_ref()?;
    let kind = match status.phase {
        Phase::Pending => return None,
        Phase::Approved | Phase::Creating => MailKind::Approved,
        Phase::Rejected => MailKind::Rejected,
        Phase::Created => MailKind::Created,
        Phase::Failed => MailKind::Failed,
    };
    match conditions::get(&status.conditions, APPLICANT_NOTIFIED) {
        Some(c) if c.reason == kind.as_str() && c.observed_generation == status.observed_generation => None,
        _ => Some(kind),
    }
}

/// Records that the applicant's mail about `kind` is done with (sent, or impossible).
pub fn notified(
    app: &InstanceApplication,
    kind: MailKind,
    sent: bool,
    message: String,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let mut status = app.status.clone().unwrap_or_default();
    conditions::set(
        &mut status.conditions,
        APPLICANT_NOTIFIED,
        Status::from(sent),
        kind.as_str(),
        message,
        status.observed_generation,
        now,
    );
    status
}

/// The transitions the applicant is mailed about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Approved,
    Rejected,
    Created,
    Failed,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Approved => "Approved",
            MailKind::Rejected => "Rejected",
            MailKind::Created => "Created",
            MailKind::Failed => "Failed",
        }
    }
}

/// Subject and body of the applicant's mail.
pub fn mail_text(app: &InstanceApplication, kind: MailKind) -> (String, String) {
    let host = match kind {
        MailKind::Rejected if app.spec.adopts() => app.spec.instance.as_deref().unwrap_or_default(),
        MailKind::Rejected => &app.spec.hostname,
        _ => approved_name(app),
    };
    let status = app.status.clone().unwrap_or_default();
    let cluster = status.cluster.as_deref().unwrap_or("(not chosen)");
    let name = app.key();
    let decided = app
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, DECIDED))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let greeting = format!("Hello {},\n\n", applicant(app));
    let footer = format!(
        "\n\nApplication: {name} (kubectl get instanceapplication -n {} {})\n-- \nganeti-operator\n",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default()
    );
    let failure = status
        .ganeti_error
        .as_ref()
        .map(|e| e.message.as_str())
        .unwrap_or("unknown error");
    let (subject, text) = match kind {
        MailKind::Approved if app.spec.adopts() => (
            format!("VM {host}: adoption approved"),
            format!(
                "your application to own the existing VM {host} on cluster {cluster} was approved ({decided}).\nIts owner tag is being written; you will get another mail when it is yours."
            ),
        ),
        MailKind::Created if app.spec.adopts() => (
            format!("VM {host} is yours"),
            format!(
                "the VM {host} on cluster {cluster} now belongs to {}.",
                app.spec.owner
            ),
        ),
        MailKind::Failed if app.spec.adopts() => (
            format!("VM {host}: adoption failed"),
            format!("the VM {host} was not adopted: {failure}.\nReply to ask an admin."),
        ),
        MailKind::Approved => (
            format!("VM {host}: application approved"),
            format!(
                "your application for the VM {host} on cluster {cluster} was approved ({decided}).\nThe VM is being created; you will get another mail when it is ready."
            ),
        ),
        MailKind::Rejected => (
            format!("VM {host}: application rejected"),
            format!("your application for the VM {host} was not approved: {decided}."),
        ),
        MailKind::Created => (
            format!("VM {host} is ready"),
            format!(
                "your VM {host} was created on cluster {cluster}.\nPrimary node: {}\nIP addresses: {}",
                status.primary_node.as_deref().unwrap_or("-"),
                if status.ips.is_empty() {
                    "-".to_string()
                } else {
                    status.ips.join(", ")
                }
            ),
        ),
        MailKind::Failed => (
            format!("VM {host}: creation failed"),
            format!(
                "Ganeti could not create your VM {host}: {failure}.\nFile a new application to try again, or reply to ask an admin."
            ),
        ),
    };
    (subject, format!("{greeting}{text}{footer}"))
}
