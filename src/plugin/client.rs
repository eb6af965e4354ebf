//! Reaching the API server with the user's own kubeconfig, and saying plainly why a
//! request failed.

use super::cli::ConnArgs;
use anyhow::Context as _;
use kube::core::response::Status;
use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};
use serde::de::DeserializeOwned;

/// The operator's aggregated API, served through the kube-apiserver.
pub const COMPUTE_API: &str = "/apis/compute.ganeti.dev/v1alpha1";
/// The GanetiInstance collection.
pub const INSTANCES: &str = "/apis/compute.ganeti.dev/v1alpha1/ganetiinstances";
/// The operator's CRDs (InstanceApplication).
const CRD_API: &str = "/apis/ganeti.dev/v1alpha1";
const AUTHENTICATION_API: &str = "/apis/authentication.k8s.io/v1";

/// A client as kubectl would connect: `--kubeconfig`, else `$KUBECONFIG` (merged) or
/// `~/.kube/config`, else in-cluster; `--context`, else the current context. The
/// credentials stay the kubeconfig's (exec plugins, certificates, tokens), never copied.
pub async fn connect(conn: &ConnArgs) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: conn.context.clone(),
        ..Default::default()
    };
    let config = match (&conn.kubeconfig, &conn.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("using context {context} of the kubeconfig"))?,
        (None, None) => Config::infer()
            .await
            .context("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a cluster")?,
    };
    Client::try_from(config).context("building the API client")
}

/// The namespace of InstanceApplications: `-n`, else the context's.
pub fn namespace(conn: &ConnArgs, client: &Client) -> String {
    conn.namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string())
}

/// `path?k=v&...`, form-encoded as the API server reads it.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}

/// GET a JSON document.
pub async fn get<T: DeserializeOwned>(client: &Client, path: &str) -> Result<T, kube::Error> {
    let request = http::Request::get(path)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request(request).await
}

/// POST a JSON body, read a JSON answer.
pub async fn post<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    body: &serde_json::Value,
) -> Result<T, kube::Error> {
    let request = http::Request::post(path)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).map_err(kube::Error::SerdeError)?)
        .map_err(kube::Error::HttpError)?;
    client.request(request).await
}

/// What a failed request was about, for its error message.
#[derive(Debug, Clone, Copy)]
pub enum About<'a> {
    /// The VMs (a list).
    Vms,
    /// One VM, as the user named it.
    Vm(&'a str),
    /// The InstanceApplications of a namespace, or one of them.
    Application {
        namespace: &'a str,
        name: Option<&'a str>,
    },
    /// Who the caller is (a SelfSubjectReview).
    Identity,
}

impl About<'_> {
    /// The API group version whose absence a 404 may mean.
    fn api(&self) -> &'static str {
        match self {
            About::Vms | About::Vm(_) => COMPUTE_API,
            About::Application { .. } => CRD_API,
            About::Identity => AUTHENTICATION_API,
        }
    }
}

impl std::fmt::Display for About<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            About::Vms => write!(f, "listing VMs"),
            About::Vm(name) => write!(f, "VM {name}"),
            About::Application {
                namespace,
                name: Some(name),
            } => write!(f, "instanceapplication {name} in namespace {namespace}"),
            About::Application { namespace, .. } => {
                write!(f, "instanceapplications in namespace {namespace}")
            }
            About::Identity => write!(f, "asking who you are"),
        }
    }
}

/// What the user reads for a failed request. `api_served`: whether the API group version
/// answers discovery (only asked after a 404, to tell a missing API from a missing object).
pub fn describe(status: &Status, about: &About<'_>, api_served: bool) -> String {
    let message = if status.message.is_empty() {
        format!("{} {}", status.code, status.reason)
    } else {
        status.message.clone()
    };
    match (status.code, about) {
        (404, About::Vms | About::Vm(_)) if !api_served => "the operator's aggregated API \
            (compute.ganeti.dev/v1alpha1) is not installed: no APIService serves it"
            .to_string(),
        (404, About::Application { .. }) if !api_served => {
            "the InstanceApplication CRD (ganeti.dev/v1alpha1) is not installed".to_string()
        }
        (404, About::Identity) if !api_served => "the API server cannot say who you are \
            (no SelfSubjectReview, Kubernetes < 1.28): use --owner-group"
            .to_string(),
        (404, About::Vm(name)) => format!("VM {name} does not exist or is not yours"),
        (
            404,
            About::Application {
                namespace,
                name: Some(name),
            },
        ) => format!("instanceapplication {name} not found in namespace {namespace}"),
        (401, _) => format!("the API server did not accept your credentials: {message}"),
        (403, _) if message.contains("forbidden") => message,
        (403, _) => format!("forbidden: {message}"),
        (503, About::Vms | About::Vm(_)) => format!(
            "the operator's aggregated API is installed but does not answer \
             (is the operator running?): {message}"
        ),
        _ => message,
    }
}

/// Turns a failed request into the error the user reads (see [`describe`]).
pub async fn explain(client: &Client, error: kube::Error, about: About<'_>) -> anyhow::Error {
    match error {
        kube::Error::Api(status) => {
            let served = status.code != 404 || api_served(client, about.api()).await;
            anyhow::anyhow!(describe(&status, &about, served))
        }
        other => anyhow::Error::new(other).context(about.to_string()),
    }
}

/// Whether an API group version answers discovery; errors other than 404 count as yes.
async fn api_served(client: &Client, api: &str) -> bool {
    !matches!(
        get::<serde_json::Value>(client, api).await,
        Err(kube::Error::Api(status)) if status.code == 404
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> Status {
        Status::failure(message, "").with_code(code)
    }

    #[test]
    fn a_missing_api_is_told_apart_from_a_missing_vm() {
        let not_found = status(404, "404 page not found");
        let missing = describe(&not_found, &About::Vm("vm1"), false);
        assert!(missing.contains("aggregated API") && missing.contains("not installed"));
        assert_eq!(
            describe(&not_found, &About::Vm("vm1"), true),
            "VM vm1 does not exist or is not yours"
        );
        assert!(describe(&not_found, &About::Vms, false).contains("APIService"));
        let crd = About::Application {
            namespace: "alice",
            name: Some("web1"),
        };
        assert!(describe(&not_found, &crd, false).contains("CRD"));
        assert_eq!(
            describe(&not_found, &crd, true),
            "instanceapplication web1 not found in namespace alice"
        );
    }

    #[test]
    fn forbidden_shows_the_servers_message() {
        let s = status(403, "you lack the right vms.reboot on lab/vm1");
        assert_eq!(
            describe(&s, &About::Vm("vm1"), true),
            "forbidden: you lack the right vms.reboot on lab/vm1"
        );
        let k8s = status(
            403,
            r#"ganetiinstances.compute.ganeti.dev "lab.vm1" is forbidden: User "bob" cannot create resource "ganetiinstances/reboot""#,
        );
        assert_eq!(describe(&k8s, &About::Vm("vm1"), true), k8s.message);
    }

    #[test]
    fn other_failures_keep_the_servers_words() {
        let unavailable = status(503, "service unavailable");
        assert!(describe(&unavailable, &About::Vms, true).contains("does not answer"));
        let invalid = status(422, "spec.hostname: must be lowercase");
        let apps = About::Application {
            namespace: "a",
            name: None,
        };
        assert_eq!(describe(&invalid, &apps, true), invalid.message);
        let conflict = Status::failure("", "Conflict").with_code(409);
        assert_eq!(describe(&conflict, &apps, true), "409 Conflict");
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(with_query(INSTANCES, &[]), INSTANCES);
        assert_eq!(
            with_query(
                "/x",
                &[
                    ("fieldSelector", "spec.cluster=lab"),
                    ("labelSelector", "a in (b, c)")
                ]
            ),
            "/x?fieldSelector=spec.cluster%3Dlab&labelSelector=a+in+%28b%2C+c%29"
        );
    }
}
