//! TLS for RAPI: a per-cluster pinned CA bundle, Ganeti's stock certificate pinned
//! exactly, or an explicit insecure mode.
//!
//! Ganeti generates an X.509 v1 self-signed certificate without subjectAltName
//! (CN = cluster name). webpki refuses v1 certificates outright, so such a certificate
//! in the bundle is pinned: the handshake is accepted only when the server's
//! end-entity certificate is byte-for-byte a pinned one, and the handshake signature
//! is still checked against that certificate's public key.

use super::error::RapiError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// How the client authenticates the RAPI server.
#[derive(Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// PEM bundle: CA certificates become trust anchors; other certificates (Ganeti's
    /// v1 self-signed one, or any non-CA certificate) are pinned exactly.
    CaBundle(Vec<u8>),
    /// Accept any certificate. Development only: the caller must surface a warning.
    Insecure,
    /// The public web PKI (a RAPI certificate from a public CA; no caBundle given).
    SystemRoots,
}

impl std::fmt::Debug for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CaBundle(pem) => write!(f, "CaBundle({} bytes)", pem.len()),
            Self::Insecure => f.write_str("Insecure"),
            Self::SystemRoots => f.write_str("SystemRoots"),
        }
    }
}

/// A CA bundle split by how each certificate is used.
#[derive(Debug, Default, Clone)]
pub struct ClassifiedBundle {
    /// v3 certificates with basicConstraints CA:TRUE: trust anchors.
    pub roots: Vec<CertificateDer<'static>>,
    /// Everything else (notably Ganeti's v1 self-signed certificate): exact pins.
    pub pinned: Vec<CertificateDer<'static>>,
}

/// Splits a PEM bundle into trust anchors and exact pins.
pub fn classify_bundle(pem: &[u8]) -> Result<ClassifiedBundle, RapiError> {
    let mut out = ClassifiedBundle::default();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| RapiError::Tls {
            detail: format!("caBundle is not valid PEM: {e}"),
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).map_err(|e| RapiError::Tls {
            detail: format!("caBundle holds an unreadable certificate: {e}"),
        })?;
        let is_ca = parsed.version() == x509_parser::x509::X509Version::V3
            && parsed
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca);
        if is_ca {
            out.roots.push(cert);
        } else {
            out.pinned.push(cert);
        }
    }
    if out.roots.is_empty() && out.pinned.is_empty() {
        return Err(RapiError::Tls {
            detail: "caBundle holds no certificate".into(),
        });
    }
    Ok(out)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for a mode.
pub fn client_config(mode: &TlsMode) -> Result<rustls::ClientConfig, RapiError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RapiError::Tls {
            detail: e.to_string(),
        })?;
    let verifier = match mode {
        TlsMode::SystemRoots => {
            return Err(RapiError::Config {
                detail: "system roots are reqwest's default configuration, not a pinned one".into(),
            });
        }
        TlsMode::Insecure => PinningVerifier {
            pinned: Vec::new(),
            webpki: None,
            accept_any: true,
            algs,
        },
        TlsMode::CaBundle(pem) => {
            let bundle = classify_bundle(pem)?;
            if bundle.pinned.is_empty() {
                // The common case: ordinary webpki verification, hostname included.
                let mut roots = RootCertStore::empty();
                for root in bundle.roots {
                    roots.add(root).map_err(|e| RapiError::Tls {
                        detail: format!("caBundle: {e}"),
                    })?;
                }
                return Ok(builder.with_root_certificates(roots).with_no_client_auth());
            }
            let webpki = if bundle.roots.is_empty() {
                None
            } else {
                let mut roots = RootCertStore::empty();
                for root in bundle.roots {
                    roots.add(root).map_err(|e| RapiError::Tls {
                        detail: format!("caBundle: {e}"),
                    })?;
                }
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| RapiError::Tls {
                            detail: e.to_string(),
                        })?,
                )
            };
            let pinned = bundle
                .pinned
                .into_iter()
                .map(|cert| {
                    let spki = spki_of(&cert).ok_or_else(|| RapiError::Tls {
                        detail: "caBundle: a pinned certificate has no readable public key".into(),
                    })?;
                    Ok(Pin { cert, spki })
                })
                .collect::<Result<Vec<_>, RapiError>>()?;
            PinningVerifier {
                pinned,
                webpki,
                accept_any: false,
                algs,
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The DER SubjectPublicKeyInfo of a certificate (works for v1 certificates too).
fn spki_of(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

#[derive(Debug)]
struct Pin {
    cert: CertificateDer<'static>,
    spki: Vec<u8>,
}

/// Exact pins first, then (if any) webpki with the bundle's CAs; or anything at all in
/// insecure mode. Handshake signatures are always checked with the presented key.
#[derive(Debug)]
struct PinningVerifier {
    pinned: Vec<Pin>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    accept_any: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl PinningVerifier {
    fn pin_for(&self, cert: &CertificateDer<'_>) -> Option<&Pin> {
        self.pinned.iter().find(|p| p.cert.as_ref() == cert.as_ref())
    }

    /// The raw public key to check a signature with, when webpki is not to be used.
    fn raw_key_for(&self, cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
        if let Some(pin) = self.pin_for(cert) {
            return Some(pin.spki.clone());
        }
        if self.accept_any { spki_of(cert) } else { None }
    }
}

fn bad_cert(e: CertificateError) -> rustls::Error {
    rustls::Error::InvalidCertificate(e)
}

/// TLS 1.2 signature check with a bare public key: rustls only offers the TLS 1.3
/// variant, so try each algorithm of the scheme as rustls does for certificates.
fn verify_tls12_raw(
    message: &[u8],
    spki: &[u8],
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let spki = SubjectPublicKeyInfoDer::from(spki);
    let key =
        webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad_cert(CertificateError::BadEncoding))?;
    let candidates = algs
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, a)| *a)
        .unwrap_or(&[]);
    for alg in candidates {
        match key.verify_signature(*alg, message, dss.signature()) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
            Err(_) => return Err(bad_cert(CertificateError::BadSignature)),
        }
    }
    Err(rustls::Error::PeerMisbehaved(
        rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
    ))
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // An exact pin stands for itself: Ganeti's certificate names the cluster, not
        // the address used to reach it, and carries no SAN anyway.
        if self.accept_any || self.pin_for(end_entity).is_some() {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(bad_cert(CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.raw_key_for(cert) {
            Some(spki) => verify_tls12_raw(message, &spki, dss, &self.algs),
            None => rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.raw_key_for(cert) {
            Some(spki) => rustls::crypto::verify_tls13_signature_with_raw_key(
                message,
                &SubjectPublicKeyInfoDer::from(spki.as_slice()),
                dss,
                &self.algs,
            ),
            None => rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_SELF_SIGNED: &str = include_str!("testdata/ganeti-v1-selfsigned.pem");
    const V3_CA: &str = include_str!("testdata/v3-ca.pem");

    #[test]
    fn a_v3_ca_becomes_a_root_and_a_v1_self_signed_certificate_a_pin() {
        let b = classify_bundle(V3_CA.as_bytes()).unwrap();
        assert_eq!((b.roots.len(), b.pinned.len()), (1, 0));
        let b = classify_bundle(V1_SELF_SIGNED.as_bytes()).unwrap();
        assert_eq!((b.roots.len(), b.pinned.len()), (0, 1));
        let both = format!("{V3_CA}\n{V1_SELF_SIGNED}");
        let b = classify_bundle(both.as_bytes()).unwrap();
        assert_eq!((b.roots.len(), b.pinned.len()), (1, 1));
    }

    #[test]
    fn webpki_indeed_refuses_the_v1_certificate() {
        // Why the pin exists: a v1 certificate cannot even be parsed as an end entity.
        let b = classify_bundle(V1_SELF_SIGNED.as_bytes()).unwrap();
        assert!(webpki::EndEntityCert::try_from(&b.pinned[0]).is_err());
        assert!(spki_of(&b.pinned[0]).is_some());
    }

    #[test]
    fn bad_bundles_are_tls_errors() {
        assert!(matches!(classify_bundle(b"not pem"), Err(RapiError::Tls { .. })));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            classify_bundle(garbage.as_bytes()),
            Err(RapiError::Tls { .. })
        ));
    }

    #[test]
    fn every_mode_builds_a_config() {
        client_config(&TlsMode::Insecure).unwrap();
        client_config(&TlsMode::CaBundle(V3_CA.as_bytes().to_vec())).unwrap();
        client_config(&TlsMode::CaBundle(V1_SELF_SIGNED.as_bytes().to_vec())).unwrap();
        assert_eq!(
            format!("{:?}", TlsMode::CaBundle(vec![1, 2])),
            "CaBundle(2 bytes)"
        );
    }
}
