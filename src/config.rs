//! The operator's settings from its command line, built once in `main` and read by the
//! controllers and the HTTP server alike.

/// Settings every part may read.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace of the Secrets that GanetiClusters (and SMTP settings) name, and of
    /// the operator's own ConfigMaps (tag ledgers, system rights, spent links).
    pub secrets_namespace: String,
    /// Secret (in `secrets_namespace`) with the SMTP settings; `None`: no mail is sent.
    pub smtp_secret: Option<String>,
    /// Mail addresses users have not verified too (default: verified ones only).
    pub mail_unverified: bool,
    /// The operator's HTTP server as users reach it (`https://ganeti.example.org`), for
    /// links in mails; `None`: no links can be mailed.
    pub public_url: Option<String>,
    /// Which GanetiClusters the operator connects to (`--allow-insecure-rapi`).
    pub rapi_policy: crate::clusters::Policy,
}
