//! UserProfile: a user's name, address, SSH keys and admin-managed groups.

use super::common::{Conditions, conditions_schema, no_private_keys_rule, ssh_public_keys_rule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A user's profile.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ganeti.dev",
    version = "v1alpha1",
    kind = "UserProfile",
    plural = "userprofiles",
    shortname = "gup",
    category = "ganeti",
    status = "UserProfileStatus",
    doc = "A user's full name, email address (verified by a mailed link), SSH public keys (installed in new VMs) and the groups admins put them in.",
    printcolumn(name = "User", type_ = "string", json_path = ".spec.username"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(
        name = "Verified",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"EmailVerified\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct UserProfileSpec {
    /// The Kubernetes username this profile belongs to. Cannot change.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("username cannot change; create a profile for the other user"))]
    pub username: String,
    /// Full name, used in mails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub full_name: Option<String>,
    /// Email address; mail goes to it once it is verified.
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = Rule::new(r"self.matches(r'^[^@\s]+@[^@\s]+\.[^@\s]+$')").message("email must be an address such as alice@example.org"))]
    pub email: String,
    /// SSH public keys, installed in the user's new VMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 16, max = 16384)))]
    #[x_kube(validation = no_private_keys_rule())]
    #[x_kube(validation = ssh_public_keys_rule())]
    pub ssh_keys: Vec<String>,
    /// Groups the user belongs to for this service, besides those Kubernetes
    /// authenticates. Only admins set these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
}

/// What the operator knows of a profile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserProfileStatus {
    /// `EmailVerified`, `KeysValid`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The address that was verified (a changed address needs verifying again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_email: Option<String>,
    /// Fingerprints (SHA256) of the valid SSH keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_fingerprints: Vec<String>,
    /// When the user last used the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// The verification link mailed for an address not yet verified. The link is
    /// good once: verifying clears this, so the same link is then refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_verification: Option<PendingVerification>,
}

/// One outstanding email verification.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingVerification {
    /// The address the link verifies.
    pub email: String,
    /// Random value the link carries; not a secret (the link's signature is what
    /// cannot be forged), it only makes each link distinct and single-use.
    pub nonce: String,
    /// When the link stops working.
    pub expires: Time,
    /// When the mail with the link went out; absent until the SMTP server took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_time: Option<Time>,
    /// The value of the annotation `ganeti.dev/resend-verification` when this link was
    /// made; a new value asks for a new link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_request: Option<String>,
    /// The SMTP server refused the address for good: no more mails to it until the
    /// address changes or a new link is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[cfg(test)]
impl UserProfile {
    /// A profile of `user` (address `<user>@example.org`) adding `groups`, for tests.
    pub fn for_tests(name: &str, user: &str, groups: &[&str]) -> Self {
        Self::new(
            name,
            UserProfileSpec {
                username: user.into(),
                full_name: None,
                email: format!("{user}@example.org"),
                ssh_keys: vec![],
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        )
    }
}
