//! Who is calling the aggregated API: the kube-apiserver proxies requests with its
//! front-proxy client certificate (checked in the TLS handshake against the
//! requestheader CA, and here against the allowed names) and the user in
//! `X-Remote-User`/`X-Remote-Group`. The configuration is the API server's own, in
//! ConfigMap `kube-system/extension-apiserver-authentication`, as every aggregated
//! API server reads it.

use std::collections::BTreeMap;
use std::sync::Arc;

pub const CONFIG_NAMESPACE: &str = "kube-system";
pub const CONFIG_NAME: &str = "extension-apiserver-authentication";

/// The requestheader settings of the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// PEM: the CA the front proxy's client certificate is signed by.
    pub client_ca: String,
    /// Common names the front proxy's certificate may have (empty: any the CA signed).
    pub allowed_names: Vec<String>,
    pub user_headers: Vec<String>,
    pub group_headers: Vec<String>,
}

fn list(data: &BTreeMap<String, String>, key: &str, default: &[&str]) -> Result<Vec<String>, String> {
    match data.get(key) {
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(text) if text.trim().is_empty() => Ok(Vec::new()),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| format!("{key} is not a JSON list of strings: {e}"))
        }
    }
}

impl RequestHeader {
    /// From the ConfigMap's data.
    pub fn parse(data: &BTreeMap<String, String>) -> Result<Self, String> {
        let client_ca = data
            .get("requestheader-client-ca-file")
            .filter(|pem| pem.contains("BEGIN CERTIFICATE"))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{CONFIG_NAMESPACE}/{CONFIG_NAME} has no requestheader-client-ca-file: the API server runs without the aggregation layer (--requestheader-client-ca-file)"
                )
            })?;
        Ok(Self {
            client_ca,
            allowed_names: list(data, "requestheader-allowed-names", &[])?,
            user_headers: list(data, "requestheader-username-headers", &["X-Remote-User"])?,
            group_headers: list(data, "requestheader-group-headers", &["X-Remote-Group"])?,
        })
    }

    /// Reads it from the API server.
    pub async fn load(client: &kube::Client) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), CONFIG_NAMESPACE);
        let cm = api
            .get(CONFIG_NAME)
            .await
            .with_context(|| format!("reading ConfigMap {CONFIG_NAMESPACE}/{CONFIG_NAME}"))?;
        Self::parse(&cm.data.unwrap_or_default()).map_err(anyhow::Error::msg)
    }

    /// The TLS settings: our certificate, and client certificates required and
    /// checked against the requestheader CA.
    pub fn server_config(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        use anyhow::Context as _;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.client_ca.as_bytes()) {
            roots.add(cert.context("a requestheader CA certificate")?)?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .context("the requestheader CA")?;
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("the serving certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).context("the serving key")?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .context("the serving certificate and key")?;
        // The aggregator speaks HTTP/1.1 to aggregated servers (and needs it for upgrades).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The proxied user and groups, when the client certificate (already verified
    /// against the CA) is the front proxy's. `peer` is the DER of the client's
    /// certificate; `header(name)` every value of a request header.
    pub fn identity<'h>(
        &self,
        peer: Option<&[u8]>,
        header: impl Fn(&str) -> Vec<&'h str>,
    ) -> Result<crate::server::auth::Identity, String> {
        let peer =
            peer.ok_or("no client certificate: only the Kubernetes API server's front proxy may call")?;
        if !self.allowed_names.is_empty() {
            let (_, cert) =
                x509_parser::parse_x509_certificate(peer).map_err(|e| format!("client certificate: {e}"))?;
            let cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default();
            if !self.allowed_names.iter().any(|n| n == cn) {
                return Err(format!("client certificate {cn:?} is not an allowed front proxy"));
            }
        }
        let user = self
            .user_headers
            .iter()
            .flat_map(|h| header(h))
            .find(|u| !u.is_empty())
            .ok_or("no user header: the request was not authenticated by the API server")?;
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| header(h))
            .map(str::to_string)
            .collect();
        Ok(crate::server::auth::Identity {
            user: user.to_string(),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn certificate(cn: &str) -> (Vec<u8>, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.der().to_vec(), ca_cert.pem())
    }

    #[test]
    fn the_front_proxy_names_the_user_and_no_one_else_may() {
        let (proxy, ca) = certificate("front-proxy-client");
        let (other, _) = certificate("mallory");
        let rh = RequestHeader::parse(&data(&[
            ("requestheader-client-ca-file", &ca),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
        ]))
        .unwrap();
        let headers = |name: &str| match name {
            "X-Remote-User" => vec!["alice"],
            "X-Remote-Group" => vec!["team-a", "system:authenticated"],
            _ => vec![],
        };
        let id = rh.identity(Some(&proxy), headers).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, ["team-a", "system:authenticated"]);
        let e = rh.identity(Some(&other), headers).unwrap_err();
        assert!(e.contains("not an allowed front proxy"), "{e}");
        assert!(rh.identity(None, headers).is_err());
        assert!(
            rh.identity(Some(&proxy), |_| vec![])
                .unwrap_err()
                .contains("no user header")
        );
        assert!(rh.server_config(b"", b"").is_err());
    }

    #[test]
    fn a_server_without_the_aggregation_layer_is_named() {
        let e = RequestHeader::parse(&data(&[("client-ca-file", "x")])).unwrap_err();
        assert!(e.contains("--requestheader-client-ca-file"), "{e}");
        assert!(
            RequestHeader::parse(&data(&[
                ("requestheader-client-ca-file", "-----BEGIN CERTIFICATE-----"),
                ("requestheader-allowed-names", "front-proxy-client"),
            ]))
            .is_err()
        );
    }
}
