//! Outgoing mail: SMTP settings from a Secret, a cheap-to-clone lettre transport, and
//! errors sorted into what a caller should retry (transient), record against one
//! recipient (permanent) or fix in the settings (config).
//!
//! Passwords are kept in `secrecy` types so that neither `Debug` nor an error message
//! can carry them into a log line.

use crate::api::profile::UserProfile;
use k8s_openapi::api::core::v1::Secret;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail as MailCommand, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting may take before the attempt counts as a transient failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a whole send (or the preparation of one) may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP (only for a relay on loopback or a trusted network).
    None,
    /// Plain connect, then STARTTLS, which must succeed before anything is sent.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl FromStr for TlsMode {
    type Err = MailError;
    fn from_str(s: &str) -> Result<Self, MailError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::StartTls),
            "tls" => Ok(TlsMode::Tls),
            other => Err(MailError::Config(format!(
                "tls must be none, starttls or tls, not {other:?}"
            ))),
        }
    }
}

/// SMTP settings parsed from a Secret: keys host, port (default 25 / 465 for tls),
/// tls = none|starttls|tls (default starttls), username, password (optional pair),
/// from (required, a mailbox), and optionally `ca.crt` (PEM roots to trust besides the
/// public ones).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    /// Never logged: `SecretString` redacts itself in `Debug`.
    pub password: Option<SecretString>,
    pub from: Mailbox,
    pub ca_pem: Option<Vec<u8>>,
}

impl SmtpSettings {
    /// Reads the settings from a Secret's `data` (and `stringData`, which only a
    /// not-yet-stored Secret carries).
    pub fn from_secret(secret: &Secret) -> Result<Self, MailError> {
        let name = secret.metadata.name.as_deref().unwrap_or("<unnamed>");
        let get = |key: &str| -> Result<Option<String>, MailError> {
            let raw = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|s| s.clone().into_bytes())
                });
            match raw {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes)
                    .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                    .map_err(|_| MailError::Config(format!("Secret {name}: key {key} is not UTF-8"))),
            }
        };

        let host =
            get("host")?.ok_or_else(|| MailError::Config(format!("Secret {name}: key host is missing")))?;
        let tls = match get("tls")? {
            Some(t) => t.parse()?,
            None => TlsMode::StartTls,
        };
        let port = match get("port")? {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                MailError::Config(format!("Secret {name}: port {p:?} is not a port number"))
            })?,
            None if tls == TlsMode::Tls => 465,
            None => 25,
        };
        let username = get("username")?;
        // Read the password without trimming: spaces may be part of it.
        let password = secret
            .data
            .as_ref()
            .and_then(|d| d.get("password"))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get("password"))
                    .map(|s| s.clone().into_bytes())
            })
            .filter(|p| !p.is_empty())
            .map(|p| {
                String::from_utf8(p)
                    .map(SecretString::from)
                    .map_err(|_| MailError::Config(format!("Secret {name}: key password is not UTF-8")))
            })
            .transpose()?;
        if username.is_some() != password.is_some() {
            return Err(MailError::Config(format!(
                "Secret {name}: username and password go together; set both or neither"
            )));
        }
        let from =
            get("from")?.ok_or_else(|| MailError::Config(format!("Secret {name}: key from is missing")))?;
        let from = from.parse::<Mailbox>().map_err(|e| {
            MailError::Config(format!(
                "Secret {name}: from {from:?} is not a mailbox such as \"Ganeti <ganeti@example.org>\": {e}"
            ))
        })?;
        let ca_pem = get("ca.crt")?.map(String::into_bytes);
        Ok(Self {
            host,
            port,
            tls,
            username,
            password,
            from,
            ca_pem,
        })
    }
}

/// One message: plain text, UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why a mail did not go out.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum MailError {
    /// The settings are wrong (missing key, bad sender, rejected credentials): no mail
    /// can go out until an admin fixes them; not the recipient's fault.
    #[error("mail settings: {0}")]
    Config(String),
    /// Worth trying again later: a 4xx reply, a refused or broken connection, a timeout.
    #[error("transient mail failure: {0}")]
    Transient(String),
    /// Trying again will not help for this recipient: a 5xx reply or a bad address.
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

impl MailError {
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Transient(_))
    }
}

/// SMTP reply codes that reject the sender's authentication rather than a recipient:
/// 530 auth required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
/// required.
const AUTH_REJECTIONS: [u16; 4] = [530, 534, 535, 538];

fn classify(e: lettre::transport::smtp::Error) -> MailError {
    let text = e.to_string();
    if let Some(code) = e.status() {
        let numeric: u16 = code.to_string().parse().unwrap_or(0);
        if AUTH_REJECTIONS.contains(&numeric) {
            return MailError::Config(text);
        }
    }
    if e.is_permanent() {
        MailError::Permanent(text)
    } else if e.is_client() {
        // lettre's own refusals (no common auth mechanism, STARTTLS not offered): a
        // setting to change, not something a retry fixes.
        MailError::Config(text)
    } else {
        // 4xx, connection, network, TLS handshake, timeouts, garbled replies.
        MailError::Transient(text)
    }
}

/// A mail transport. Cloning is cheap (the transport is reference-counted inside).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// What [`Mailer::prepare`] opens its own connections with.
    server: Arc<Server>,
}

/// Where and how to connect, for the two-step send.
struct Server {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(settings: SmtpSettings) -> Result<Self, MailError> {
        let tls_parameters = || -> Result<TlsParameters, MailError> {
            let mut builder = TlsParameters::builder(settings.host.clone());
            if let Some(pem) = &settings.ca_pem {
                // An empty or garbled PEM parses as zero certificates; say so rather
                // than trust nothing extra in silence.
                if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(MailError::Config("ca.crt holds no PEM certificate".into()));
                }
                let cert = Certificate::from_pem(pem)
                    .map_err(|e| MailError::Config(format!("ca.crt is not a PEM certificate: {e}")))?;
                builder = builder.add_root_certificate(cert);
            }
            builder
                .build()
                .map_err(|e| MailError::Config(format!("TLS settings for {}: {e}", settings.host)))
        };
        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            TlsMode::StartTls => Tls::Required(tls_parameters()?),
            TlsMode::Tls => Tls::Wrapper(tls_parameters()?),
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            )),
            _ => None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
            .port(settings.port)
            .tls(tls.clone())
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(c) = &credentials {
            builder = builder.credentials(c.clone());
        }
        Ok(Self {
            transport: builder.build(),
            from: settings.from,
            server: Arc::new(Server {
                host: settings.host,
                port: settings.port,
                tls,
                credentials,
            }),
        })
    }

    /// Reads the named Secret and builds a Mailer.
    pub async fn from_secret_ref(
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Self, MailError> {
        let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
        let secret = match api.get(name).await {
            Ok(s) => s,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 403 => {
                return Err(MailError::Config(format!(
                    "cannot read SMTP Secret {namespace}/{name}: {}",
                    status.message
                )));
            }
            Err(e) => {
                return Err(MailError::Transient(format!(
                    "cannot read SMTP Secret {namespace}/{name}: {e}"
                )));
            }
        };
        Self::new(SmtpSettings::from_secret(&secret)?)
    }

    /// The sender every mail carries.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// One message, plain text UTF-8. Transient (4xx, connection) vs permanent (5xx, bad
    /// address) told apart.
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.send_message(mail, None).await
    }

    /// Like [`Mailer::send`], with a caller-chosen `Message-ID` (`<local@domain>`), so a
    /// mail that might be sent twice carries the same id both times and mail clients
    /// can fold the copies.
    pub async fn send_with_message_id(&self, mail: &Mail, message_id: &str) -> Result<(), MailError> {
        self.send_message(mail, Some(message_id.to_string())).await
    }

    async fn send_message(&self, mail: &Mail, message_id: Option<String>) -> Result<(), MailError> {
        let message = self.build(mail, message_id)?;
        // lettre's timeout covers connecting only; a server that stops answering
        // must not hold a reconcile forever.
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(result) => result.map(|_| ()).map_err(classify),
            Err(_) => Err(MailError::Transient(format!(
                "the SMTP server did not answer within {}s",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    fn build(&self, mail: &Mail, message_id: Option<String>) -> Result<Message, MailError> {
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| MailError::Permanent(format!("{:?} is not a mail address: {e}", mail.to)))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .message_id(message_id)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| MailError::Permanent(format!("cannot build the mail: {e}")))
    }

    /// The first of two steps of a send that can be made exactly-once with a durable
    /// record: connects, and has the server accept the sender, the recipient and the
    /// `DATA` command, so every refusal that depends on the recipient has already come.
    /// Nothing is delivered until [`PreparedMail::commit`]; dropping the prepared mail
    /// (or the process dying) abandons the transaction, which SMTP servers discard.
    pub async fn prepare(&self, mail: &Mail, message_id: Option<&str>) -> Result<PreparedMail, MailError> {
        // Nothing is delivered before commit, so giving up on a silent server is safe.
        match tokio::time::timeout(SEND_TIMEOUT, self.prepare_inner(mail, message_id)).await {
            Ok(result) => result,
            Err(_) => Err(MailError::Transient(format!(
                "the SMTP server did not answer within {}s",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn prepare_inner(&self, mail: &Mail, message_id: Option<&str>) -> Result<PreparedMail, MailError> {
        let message = self.build(mail, message_id.map(String::from))?;
        let server = &self.server;
        let hello = ClientId::default();
        let implicit_tls = match &server.tls {
            Tls::Wrapper(p) => Some(p.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (server.host.as_str(), server.port),
            Some(SMTP_TIMEOUT),
            &hello,
            implicit_tls,
            None,
        )
        .await
        .map_err(classify)?;
        // From here on, every failure closes the connection politely.
        let result = async {
            if let Tls::Required(p) = &server.tls {
                conn.starttls(p.clone(), &hello).await?;
            }
            if let Some(c) = &server.credentials {
                conn.auth(DEFAULT_MECHANISMS, c).await?;
            }
            let bytes = message.formatted();
            let envelope = message.envelope();
            let mut options = Vec::new();
            let non_ascii_address = envelope
                .from()
                .into_iter()
                .chain(envelope.to())
                .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii());
            if non_ascii_address {
                options.push(MailParameter::SmtpUtfEight);
            }
            if !bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
                options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
            }
            conn.command(MailCommand::new(envelope.from().cloned(), options))
                .await?;
            for to in envelope.to() {
                conn.command(Rcpt::new(to.clone(), Vec::new())).await?;
            }
            conn.command(Data).await?;
            Ok::<_, lettre::transport::smtp::Error>(bytes)
        }
        .await;
        match result {
            Ok(bytes) => Ok(PreparedMail {
                conn: Some(conn),
                bytes,
            }),
            Err(e) => {
                conn.abort().await;
                Err(classify(e))
            }
        }
    }
}

/// An SMTP transaction held open just before the point of no return (see
/// [`Mailer::prepare`]).
pub struct PreparedMail {
    conn: Option<AsyncSmtpConnection>,
    bytes: Vec<u8>,
}

/// How a [`PreparedMail::commit`] failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// The server answered the content with a refusal: the mail was not delivered.
    #[error("{0}")]
    Refused(MailError),
    /// The connection failed after the content was handed over: whether the server
    /// took the mail is unknown.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl PreparedMail {
    /// Sends the content and the final dot, the point at which the server takes the
    /// mail, and reads its answer. Not bounded in time here: the caller decides how
    /// long to wait, and that giving up means the outcome is unknown.
    pub async fn commit(mut self) -> Result<(), CommitError> {
        let mut conn = self.conn.take().expect("a prepared mail holds its connection");
        match conn.message(&self.bytes).await {
            Ok(_) => {
                // The mail is accepted; QUIT is a courtesy whose failure changes nothing,
                // and the caller must not wait for it to record the delivery.
                tokio::spawn(async move {
                    let _ = conn.command(Quit).await;
                });
                Ok(())
            }
            Err(e) if e.is_transient() || e.is_permanent() => {
                conn.abort().await;
                Err(CommitError::Refused(classify(e)))
            }
            Err(e) => {
                // The connection is broken or silent: drop it rather than wait on QUIT.
                drop(conn);
                Err(CommitError::Unknown(e.to_string()))
            }
        }
    }

    /// Gives up on the transaction: nothing is delivered. The connection is dropped,
    /// not closed with QUIT: inside DATA, QUIT would be read as part of the content.
    pub async fn abort(mut self) {
        drop(self.conn.take());
    }
}

/// Whether `s` is a mail address with a dotted domain (`alice@example.org`).
pub fn is_mail_address(s: &str) -> bool {
    Address::from_str(s).is_ok_and(|a| a.domain().contains('.') && !a.domain().ends_with('.'))
}

/// The address to mail a user at: their UserProfile's email if verified (or if
/// `allow_unverified`), else the username itself when it is an email address.
pub fn address_for(username: &str, profile: Option<&UserProfile>, allow_unverified: bool) -> Option<String> {
    if let Some(p) = profile {
        let email = p.spec.email.trim();
        // The verified address is recorded in status; a changed address is unverified
        // from the moment the spec changes, before the controller catches up.
        let verified = p
            .status
            .as_ref()
            .and_then(|s| s.verified_email.as_deref())
            .is_some_and(|v| v == email);
        if (verified || allow_unverified) && is_mail_address(email) {
            return Some(email.to_string());
        }
    }
    is_mail_address(username).then(|| username.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::profile::{UserProfileSpec, UserProfileStatus};
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("smtp".into()),
                ..Default::default()
            },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_starttls_on_port_25() {
        let s = SmtpSettings::from_secret(&secret(&[
            ("host", "mail.example.org"),
            ("from", "ganeti@example.org"),
        ]))
        .unwrap();
        assert_eq!(s.host, "mail.example.org");
        assert_eq!(s.tls, TlsMode::StartTls);
        assert_eq!(s.port, 25);
        assert!(s.username.is_none() && s.password.is_none());
        assert_eq!(s.from.email.to_string(), "ganeti@example.org");
    }

    #[test]
    fn implicit_tls_defaults_to_port_465_and_an_explicit_port_wins() {
        let s = SmtpSettings::from_secret(&secret(&[
            ("host", "h.example"),
            ("from", "a@b.example"),
            ("tls", "TLS"),
        ]))
        .unwrap();
        assert_eq!((s.tls, s.port), (TlsMode::Tls, 465));
        let s = SmtpSettings::from_secret(&secret(&[
            ("host", "h.example"),
            ("from", "a@b.example"),
            ("tls", "none"),
            ("port", "2525"),
        ]))
        .unwrap();
        assert_eq!((s.tls, s.port), (TlsMode::None, 2525));
    }

    #[test]
    fn from_takes_a_display_name() {
        let s = SmtpSettings::from_secret(&secret(&[
            ("host", "h.example"),
            ("from", "Ganeti service <ganeti@example.org>"),
        ]))
        .unwrap();
        assert_eq!(s.from.name.as_deref(), Some("Ganeti service"));
    }

    #[test]
    fn string_data_is_read_too() {
        let sec = Secret {
            string_data: Some(BTreeMap::from([
                ("host".to_string(), "h.example".to_string()),
                ("from".to_string(), "a@b.example".to_string()),
            ])),
            ..Default::default()
        };
        assert!(SmtpSettings::from_secret(&sec).is_ok());
    }

    #[test]
    fn bad_settings_are_config_errors_that_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("from", "a@b.example")], "host"),
            (&[("host", "h")], "from"),
            (&[("host", "h"), ("from", "not a mailbox")], "from"),
            (&[("host", "h"), ("from", "a@b.example"), ("tls", "ssl")], "tls"),
            (&[("host", "h"), ("from", "a@b.example"), ("port", "0")], "port"),
            (
                &[("host", "h"), ("from", "a@b.example"), ("port", "smtp")],
                "port",
            ),
            (
                &[("host", "h"), ("from", "a@b.example"), ("username", "u")],
                "username and password",
            ),
            (
                &[("host", "h"), ("from", "a@b.example"), ("password", "p")],
                "username and password",
            ),
        ];
        for (pairs, key) in cases {
            match SmtpSettings::from_secret(&secret(pairs)) {
                Err(MailError::Config(m)) => assert!(m.contains(key), "{m:?} names {key}"),
                other => panic!("{pairs:?}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let s = SmtpSettings::from_secret(&secret(&[
            ("host", "h.example"),
            ("from", "a@b.example"),
            ("username", "mailer"),
            ("password", " s3cr3t-pw "),
        ]))
        .unwrap();
        assert_eq!(
            s.password.as_ref().unwrap().expose_secret(),
            " s3cr3t-pw ",
            "kept verbatim"
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        let mailer = Mailer::new(s).unwrap();
        assert!(!format!("{mailer:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_bad_ca_is_a_config_error() {
        let s = SmtpSettings::from_secret(&secret(&[
            ("host", "h.example"),
            ("from", "a@b.example"),
            ("ca.crt", "not pem"),
        ]))
        .unwrap();
        assert!(matches!(Mailer::new(s), Err(MailError::Config(_))));
    }

    fn profile(user: &str, email: &str, verified: Option<&str>) -> UserProfile {
        let mut p = UserProfile::new(
            user,
            UserProfileSpec {
                username: user.into(),
                full_name: None,
                email: email.into(),
                ssh_keys: vec![],
                groups: vec![],
            },
        );
        p.status = Some(UserProfileStatus {
            verified_email: verified.map(String::from),
            ..Default::default()
        });
        p
    }

    #[test]
    fn address_for_prefers_a_verified_profile_address() {
        let p = profile("alice", "alice@example.org", Some("alice@example.org"));
        assert_eq!(
            address_for("alice", Some(&p), false).as_deref(),
            Some("alice@example.org")
        );
    }

    #[test]
    fn an_unverified_or_changed_address_is_not_used_unless_allowed() {
        let unverified = profile("bob", "bob@example.org", None);
        assert_eq!(address_for("bob", Some(&unverified), false), None);
        assert_eq!(
            address_for("bob", Some(&unverified), true).as_deref(),
            Some("bob@example.org")
        );
        let changed = profile("bob", "new@example.org", Some("old@example.org"));
        assert_eq!(address_for("bob", Some(&changed), false), None);
    }

    #[test]
    fn a_username_that_is_an_address_is_the_fallback() {
        assert_eq!(
            address_for("carol@example.org", None, false).as_deref(),
            Some("carol@example.org")
        );
        let unverified = profile("carol@example.org", "c2@example.org", None);
        assert_eq!(
            address_for("carol@example.org", Some(&unverified), false).as_deref(),
            Some("carol@example.org")
        );
        assert_eq!(address_for("carol", None, true), None);
        assert_eq!(address_for("system:serviceaccount:ns:sa", None, true), None);
        assert!(!is_mail_address("root@localhost"));
    }
}
