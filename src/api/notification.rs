//! Notification: a mail to VM owners, and the archive of its delivery.

use super::common::{Conditions, InstanceRef, conditions_schema};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A mail to the owners of some VMs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ganeti.dev",
    version = "v1alpha1",
    kind = "Notification",
    plural = "notifications",
    shortname = "gnotify",
    category = "ganeti",
    status = "NotificationStatus",
    doc = "A mail to VM owners, chosen as users, groups, instances (their owners) or clusters (owners of every VM on them). Each recipient gets one personalised mail; status is the archive of what was sent.",
    printcolumn(name = "Subject", type_ = "string", json_path = ".spec.subject"),
    printcolumn(name = "Recipients", type_ = "integer", json_path = ".status.recipientCount"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Sent", type_ = "date", json_path = ".status.sentTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSpec {
    /// Mail subject (a template, like the body).
    #[schemars(length(max = 998))]
    #[x_kube(validation = Rule::new("self.trim().size() > 0").message("subject must not be empty"))]
    pub subject: String,
    /// Mail body, a template: `{{ user }}` is the recipient, `{{ instances }}` the
    /// recipient's affected instances, `{{ cluster }}` the cluster when one is named.
    #[schemars(length(min = 1, max = 65536))]
    pub body: String,
    /// Who receives it; at least one selector must name someone.
    pub recipients: Recipients,
}

/// Recipient selectors; their union receives the mail, one per address.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0) || (has(self.instances) && size(self.instances) > 0) || (has(self.clusters) && size(self.clusters) > 0)")
    .message("name at least one recipient: users, groups, instances or clusters"))]
pub struct Recipients {
    /// Usernames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    pub users: Vec<String>,
    /// Groups: every member with a UserProfile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub groups: Vec<String>,
    /// Instances: their owners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    pub instances: Vec<InstanceRef>,
    /// GanetiClusters: the owners of every VM on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub clusters: Vec<String>,
}

/// Where a notification is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NotificationPhase {
    #[default]
    Pending,
    Sending,
    Sent,
    PartiallyFailed,
    Failed,
}

/// The archive: who was mailed, when, and how it went.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationStatus {
    /// Where the notification is.
    #[serde(default)]
    pub phase: NotificationPhase,
    /// `TemplateValid`, `Delivered` and the like.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Every resolved recipient, with its delivery result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<RecipientStatus>,
    /// Number of resolved recipients.
    #[serde(default)]
    pub recipient_count: u32,
    /// When the last mail went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_time: Option<Time>,
    /// Who was named but gets no mail, and why (no verified address, a VM without
    /// owner, a group without members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRecipient>,
}

/// Someone or something named in the recipients that yields no mail.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRecipient {
    /// `user alice`, `group ops`, `instance tb/vm1.example.org`.
    pub name: String,
    /// Why no mail goes there.
    pub reason: String,
}

/// One recipient's delivery.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecipientStatus {
    /// The address mailed.
    pub address: String,
    /// The user it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `Pending`, `Sending` (handed to the SMTP server, its answer not yet recorded),
    /// `Sent` or `Failed`.
    pub result: DeliveryResult,
    /// Delivery attempts so far (transient failures are retried).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The SMTP server's answer on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was sent or last tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// The recipient's affected instances named in the mail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
}

/// One delivery's result.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeliveryResult {
    #[default]
    Pending,
    Sending,
    Sent,
    Failed,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
