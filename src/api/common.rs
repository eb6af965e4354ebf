//! Types and validation rules shared by several kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::Rule;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// RFC 1123 DNS subdomain: lowercase labels of at most 63 characters, joined by dots.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";

/// A quantity of bytes (no milli-units): `512Mi`, `4Gi`, `100G`, `1.5Ti`.
pub const BYTES_QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// CEL rule for a byte quantity that must be above zero and at most `max` (`4Ti`).
pub fn positive_bytes_rule(what: &str, max: &str) -> Rule {
    Rule::new(format!(
        "self.matches(r'{BYTES_QUANTITY_PATTERN}') && quantity(self).isGreaterThan(quantity('0')) \
         && quantity(self).compareTo(quantity('{max}')) <= 0"
    ))
    .message(kube::core::Message::Message(format!(
        "{what} must be a size such as 512Mi, 4Gi or 100G, larger than 0 and at most {max}"
    )))
}

/// CEL rule for a byte quantity that may be zero (quota limits).
pub fn non_negative_bytes_rule(what: &str) -> Rule {
    Rule::new(format!("self.matches(r'{BYTES_QUANTITY_PATTERN}')")).message(kube::core::Message::Message(
        format!("{what} must be a non-negative size such as 0, 512Mi, 4Gi or 100G"),
    ))
}

/// Who a thing belongs to, or whom a binding or quota is about.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// `User` for one Kubernetes user, `Group` for every member of a Kubernetes group.
    pub kind: SubjectKind,
    /// The username or group name exactly as the Kubernetes API server authenticates it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl Subject {
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::User,
            name: name.into(),
        }
    }
    pub fn group(name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::Group,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            SubjectKind::User => write!(f, "user {}", self.name),
            SubjectKind::Group => write!(f, "group {}", self.name),
        }
    }
}

/// Whether a subject is a user or a group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum SubjectKind {
    User,
    Group,
}

/// One Ganeti instance, named by its GanetiCluster and its instance name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRef {
    /// Name of the GanetiCluster object the instance runs on.
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    /// The instance's name in Ganeti (its fully qualified host name).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Standard status conditions, kept as a map keyed by `type` (as Kubernetes' own kinds do).
pub type Conditions = Vec<Condition>;

/// Marks a `conditions` field as a list map keyed by `type`, for server-side apply.
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// CEL rule for a VM host name: the pattern, with a message a person can act on.
pub fn hostname_rule() -> Rule {
    Rule::new(format!("self.matches(r'{DNS_SUBDOMAIN_PATTERN}')")).message(
        "hostname must be a lowercase DNS name (RFC 1123): letters, digits and '-', dot-separated labels of at most 63 characters, e.g. web1.example.org",
    )
}

/// OpenSSH public key line: key type, base64 blob, optional comment.
pub const SSH_PUBLIC_KEY_PATTERN: &str = r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+=* ?[^\n]*$";

/// CEL rule on a list of SSH keys: no private key pasted by mistake.
pub fn no_private_keys_rule() -> Rule {
    Rule::new("self.all(k, !k.contains('PRIVATE KEY'))").message(
        "a private key was pasted: use the public key (the .pub file) instead, and treat that private key as leaked",
    )
}

/// CEL rule on a list of SSH keys: each is one OpenSSH public key line.
pub fn ssh_public_keys_rule() -> Rule {
    Rule::new(format!(
        "self.all(k, k.contains('PRIVATE KEY') || k.matches(r'{SSH_PUBLIC_KEY_PATTERN}'))"
    ))
    .message("each SSH key must be one OpenSSH public key line, e.g. 'ssh-ed25519 AAAA... user@host'")
}
