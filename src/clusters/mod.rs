//! How the operator reaches a GanetiCluster's Remote API: its credentials Secret and
//! TLS settings, under the operator's own policy. One place, used by the GanetiCluster
//! controller (through the shared [`Registry`]) and by `ganeti-operator explain`.
//!
//! # Why a label and a flag
//! Whoever may create a GanetiCluster chooses its `rapiUrl` and names a Secret. Without
//! a check, the operator would send that Secret's first two keys as HTTP basic auth to
//! the URL: any Secret of the operator's namespace (the SMTP password, the link signing
//! key, another cluster's credentials) could be sent to a server of the creator's
//! choosing. So:
//! - a Secret is read only when it carries the label [`CREDENTIALS_LABEL`]` =
//!   `[`CREDENTIALS_LABEL_VALUE`]: whoever labels it (someone who may write Secrets
//!   there) says it is RAPI credentials, meant to be sent to a RAPI. An unlabelled
//!   Secret's data is never fetched: [`fetch_secret`] reads its metadata only;
//! - `spec.insecure` (no certificate check, plain http) lets anyone on the path read
//!   the credentials: it is refused unless the operator runs with
//!   `--allow-insecure-rapi` ([`Policy::allow_insecure`]), a choice of whoever deploys
//!   the operator, not of whoever writes a GanetiCluster.

pub mod gwm;
mod registry;

pub use registry::{ClientKey, Registry};

use crate::api::cluster::GanetiClusterSpec;
use crate::rapi::{Credentials, RapiClient, RapiConfig, RapiError, TlsMode};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// The label a credentials Secret must carry, with [`CREDENTIALS_LABEL_VALUE`].
pub const CREDENTIALS_LABEL: &str = "ganeti.dev/credentials";
pub const CREDENTIALS_LABEL_VALUE: &str = "rapi";

/// What the operator's deployer allows, whatever GanetiClusters ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--allow-insecure-rapi`: clusters may set `spec.insecure`.
    pub allow_insecure: bool,
}

/// Why a cluster's RAPI is not reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "Secret {namespace}/{name} does not exist: create it with the RAPI user's username and password, labelled {CREDENTIALS_LABEL}={CREDENTIALS_LABEL_VALUE}"
    )]
    MissingSecret { namespace: String, name: String },
    #[error(
        "Secret {namespace}/{name} is not labelled {CREDENTIALS_LABEL}={CREDENTIALS_LABEL_VALUE}: the operator reads only Secrets marked as RAPI credentials (add the label: kubectl -n {namespace} label secret {name} {CREDENTIALS_LABEL}={CREDENTIALS_LABEL_VALUE})"
    )]
    Unlabelled { namespace: String, name: String },
    #[error("Secret {namespace}/{name} lacks the keys {user_key:?} and {password_key:?}")]
    InvalidSecret {
        namespace: String,
        name: String,
        user_key: String,
        password_key: String,
    },
    #[error(
        "spec.insecure is refused: this operator does not skip TLS certificate checks (it would send the credentials to whoever answers); give spec.caBundle, or run the operator with --allow-insecure-rapi (labs only)"
    )]
    InsecureRefused,
    #[error("{0}")]
    Client(#[from] RapiError),
    #[error("reading Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Whether the Secret is labelled as RAPI credentials.
pub fn labelled(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(CREDENTIALS_LABEL))
        .is_some_and(|v| v == CREDENTIALS_LABEL_VALUE)
}

/// The TLS mode a spec asks for, if the policy allows it.
pub fn tls_mode(spec: &GanetiClusterSpec, policy: Policy) -> Result<TlsMode, ConnectError> {
    match (spec.insecure == Some(true), &spec.ca_bundle) {
        (true, _) if !policy.allow_insecure => Err(ConnectError::InsecureRefused),
        (true, _) => Ok(TlsMode::Insecure),
        (false, Some(pem)) => Ok(TlsMode::CaBundle(pem.as_bytes().to_vec())),
        (false, None) => Ok(TlsMode::SystemRoots),
    }
}

/// The credentials in `secret`, if it is labelled for the operator and has both keys.
pub fn credentials(spec: &GanetiClusterSpec, secret: &Secret) -> Result<Credentials, ConnectError> {
    let reference = &spec.credentials_secret;
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    if !labelled(&secret.metadata) {
        return Err(ConnectError::Unlabelled {
            namespace,
            name: reference.name.clone(),
        });
    }
    let data = secret.data.as_ref();
    let read = |key: &str| -> Option<String> {
        data?
            .get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim_end_matches('\n').to_string())
    };
    let user_key = reference.username_key.as_deref().unwrap_or("username");
    let password_key = reference.password_key.as_deref().unwrap_or("password");
    match (read(user_key), read(password_key)) {
        (Some(user), Some(password)) => Ok(Credentials::new(user, password)),
        _ => Err(ConnectError::InvalidSecret {
            namespace,
            name: reference.name.clone(),
            user_key: user_key.to_owned(),
            password_key: password_key.to_owned(),
        }),
    }
}

/// A RAPI client for the cluster: the policy first (nothing is built for a refused
/// spec), then the Secret's label and keys.
pub fn connect(
    spec: &GanetiClusterSpec,
    secret: &Secret,
    policy: Policy,
) -> Result<RapiClient, ConnectError> {
    connect_named("", spec, secret, policy)
}

/// As [`connect`], for the GanetiCluster `cluster` (the name its metrics carry).
pub fn connect_named(
    cluster: &str,
    spec: &GanetiClusterSpec,
    secret: &Secret,
    policy: Policy,
) -> Result<RapiClient, ConnectError> {
    let tls = tls_mode(spec, policy)?;
    let credentials = credentials(spec, secret)?;
    let mut config = RapiConfig::new(spec.rapi_url.clone(), credentials, tls);
    // An observed-only cluster gets a client that cannot write: whatever path a
    // write comes from, it stops here unsent.
    config.read_only = spec.observed_only();
    config.cluster = cluster.to_owned();
    Ok(RapiClient::new(config)?)
}

/// The credentials Secret a spec names, read only if it is labelled: its metadata
/// first (an unlabelled Secret's data never reaches the operator), then the whole
/// Secret, which [`connect`] checks again (the label may have gone in between).
pub async fn fetch_secret(
    client: &kube::Client,
    namespace: &str,
    spec: &GanetiClusterSpec,
) -> Result<Secret, ConnectError> {
    let name = &spec.credentials_secret.name;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let kube_error = |source| ConnectError::Kube {
        namespace: namespace.to_owned(),
        name: name.clone(),
        source,
    };
    let missing = || ConnectError::MissingSecret {
        namespace: namespace.to_owned(),
        name: name.clone(),
    };
    let meta = api
        .get_metadata_opt(name)
        .await
        .map_err(kube_error)?
        .ok_or_else(missing)?;
    if !labelled(&meta.metadata) {
        return Err(ConnectError::Unlabelled {
            namespace: namespace.to_owned(),
            name: name.clone(),
        });
    }
    api.get_opt(name).await.map_err(kube_error)?.ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use secrecy::ExposeSecret;
    use std::collections::BTreeMap;

    fn spec(extra: serde_json::Value) -> GanetiClusterSpec {
        let mut v = serde_json::json!({"rapiUrl": "https://c.example.org:5080", "credentialsSecret": {"name": "rapi"}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn secret(label: Option<&str>, keys: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("rapi".into());
        s.metadata.namespace = Some("ganeti-system".into());
        s.metadata.labels = label.map(|v| BTreeMap::from([(CREDENTIALS_LABEL.to_string(), v.to_string())]));
        s.data = Some(
            keys.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn an_unlabelled_secret_is_never_used_and_the_message_says_how_to_label_it() {
        let keys = [("username", "op"), ("password", "pw\n")];
        for label in [None, Some("smtp"), Some("")] {
            let e = credentials(&spec(serde_json::json!({})), &secret(label, &keys)).unwrap_err();
            assert!(matches!(e, ConnectError::Unlabelled { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains("kubectl -n ganeti-system label secret rapi ganeti.dev/credentials=rapi"),
                "{msg}"
            );
            assert!(!msg.contains("pw"), "no secret data in messages");
            assert!(
                connect(
                    &spec(serde_json::json!({})),
                    &secret(label, &keys),
                    Policy::default()
                )
                .is_err()
            );
        }
        let creds = credentials(&spec(serde_json::json!({})), &secret(Some("rapi"), &keys)).unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.expose_secret()),
            ("op", "pw")
        );
        connect(
            &spec(serde_json::json!({})),
            &secret(Some("rapi"), &keys),
            Policy::default(),
        )
        .expect("labelled: connects");
    }

    #[test]
    fn an_observed_cluster_gets_a_client_that_cannot_write() {
        let labelled = secret(Some("rapi"), &[("username", "viewer"), ("password", "b")]);
        let observed = spec(serde_json::json!({"managementPolicy": "Observe"}));
        assert!(
            connect(&observed, &labelled, Policy::default())
                .unwrap()
                .is_read_only()
        );
        for managed in [
            spec(serde_json::json!({})),
            spec(serde_json::json!({"managementPolicy": "Manage"})),
        ] {
            assert!(
                !connect(&managed, &labelled, Policy::default())
                    .unwrap()
                    .is_read_only()
            );
        }
        // Changing the policy makes a new client.
        assert_ne!(
            ClientKey::new(&observed, &labelled),
            ClientKey::new(&spec(serde_json::json!({})), &labelled)
        );
    }

    #[test]
    fn the_keys_are_the_specs_or_the_defaults() {
        let s = spec(
            serde_json::json!({"credentialsSecret": {"name": "rapi", "usernameKey": "u", "passwordKey": "p"}}),
        );
        let e = credentials(&s, &secret(Some("rapi"), &[("username", "a"), ("password", "b")])).unwrap_err();
        assert!(e.to_string().contains("lacks the keys \"u\" and \"p\""), "{e}");
        let creds = credentials(&s, &secret(Some("rapi"), &[("u", "a"), ("p", "b")])).unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.expose_secret()),
            ("a", "b")
        );
    }

    #[test]
    fn insecure_needs_the_operator_flag() {
        let insecure = spec(serde_json::json!({"insecure": true}));
        let labelled = secret(Some("rapi"), &[("username", "a"), ("password", "b")]);
        let e = connect(&insecure, &labelled, Policy::default()).unwrap_err();
        assert!(matches!(e, ConnectError::InsecureRefused));
        assert!(e.to_string().contains("--allow-insecure-rapi"), "{e}");
        // Refused before the Secret is even looked at.
        assert!(matches!(
            connect(&insecure, &secret(None, &[]), Policy::default()).unwrap_err(),
            ConnectError::InsecureRefused
        ));
        let allowed = Policy { allow_insecure: true };
        assert!(matches!(tls_mode(&insecure, allowed), Ok(TlsMode::Insecure)));
        assert!(connect(&insecure, &labelled, allowed).unwrap().is_insecure());
        // Without insecure the flag changes nothing.
        let pinned = spec(serde_json::json!({"caBundle": "-----BEGIN CERTIFICATE-----"}));
        assert!(matches!(tls_mode(&pinned, allowed), Ok(TlsMode::CaBundle(_))));
        assert!(matches!(
            tls_mode(&spec(serde_json::json!({})), Policy::default()),
            Ok(TlsMode::SystemRoots)
        ));
    }
}
