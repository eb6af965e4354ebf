//! `ganeti-operator`: the command line (run, crdgen), wiring and graceful shutdown.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use ganeti_operator::leader::Leadership;
use ganeti_operator::shared::Shared;
use ganeti_operator::{api, controllers, metrics::Metrics, server};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "ganeti-operator",
    version,
    about = "A self-service VM service on Ganeti clusters, run from Kubernetes"
)]
struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers and the HTTP server until SIGTERM or SIGINT.
    Run(Box<RunArgs>),
    /// Print every CRD as one multi-document YAML stream.
    Crdgen {
        /// Write one file per kind into this folder instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Explain whether a user may do something, and which role, binding or tag decides.
    /// Exits 0 when allowed, 1 when not.
    Explain(ExplainArgs),
    /// The kubectl plugin (`kubectl ganeti`; also run when invoked as `kubectl-ganeti`):
    /// `ganeti-operator kubectl --help` lists its commands.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(clap::Args, Debug)]
struct ExplainArgs {
    /// The Kubernetes username.
    user: String,
    /// The right: `reboot` (or `vms.reboot`), `clusters.createVm`, `system.jobs`, ...
    right: String,
    /// `<cluster>/<instance>` for a VM right, `<cluster>` for a cluster right, nothing
    /// for a system right.
    object: Option<String>,
    /// A group of the user (repeat for each).
    #[arg(long = "group", short = 'g')]
    groups: Vec<String>,
    /// Kubeconfig file. Absent: $KUBECONFIG, ~/.kube/config, then the in-cluster ServiceAccount.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the GanetiClusters' credentials Secrets (to read the VM's tags).
    #[arg(long, env = "SECRETS_NAMESPACE", default_value = "ganeti-system")]
    secrets_namespace: String,
    /// Read the tags of clusters with `insecure: true` too (as the operator does only
    /// when run with this flag).
    #[arg(long, env = "ALLOW_INSECURE_RAPI", default_value_t = false)]
    allow_insecure_rapi: bool,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kubeconfig file. Absent: $KUBECONFIG, ~/.kube/config, then the in-cluster ServiceAccount.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace the operator reads Secrets (RAPI and SMTP credentials) from.
    #[arg(long, env = "SECRETS_NAMESPACE", default_value = "ganeti-system")]
    secrets_namespace: String,
    /// Secret (in the secrets namespace) with the SMTP settings: host, port, tls
    /// (none|starttls|tls), username, password, from. Absent: no mail is sent.
    #[arg(long, env = "SMTP_SECRET")]
    smtp_secret: Option<String>,
    /// Also mail addresses their users have not verified.
    #[arg(long, env = "MAIL_UNVERIFIED", default_value_t = false)]
    mail_unverified: bool,
    /// The HTTP server's address as users reach it (https://ganeti.example.org), for
    /// the links in mails. Absent: no email verification links are mailed.
    #[arg(long, env = "PUBLIC_URL")]
    public_url: Option<String>,
    /// Secret (in the secrets namespace) whose key `key` (at least 32 bytes) signs
    /// email verification links, confirmation links and console tickets. Required with
    /// --leader-election (several replicas must sign alike).
    #[arg(long, env = "LINK_KEY_SECRET")]
    link_key_secret: Option<String>,
    /// The link signing key itself (at least 32 bytes); prefer --link-key-secret.
    #[arg(long, env = "LINK_KEY", hide_env_values = true)]
    link_key: Option<String>,
    /// Let GanetiClusters set `insecure: true` (no TLS certificate check, plain http):
    /// the RAPI credentials then go to whoever answers. Off: such clusters are refused.
    /// For labs only.
    #[arg(long, env = "ALLOW_INSECURE_RAPI", default_value_t = false)]
    allow_insecure_rapi: bool,
    /// Run the controllers only while holding the leader Lease (several replicas); off:
    /// this process always reconciles (one replica only).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (in a cluster: the operator's own namespace).
    #[arg(long, env = "LEASE_NAMESPACE", default_value = "ganeti-system")]
    lease_namespace: String,
    /// Seconds the leader's lease stays valid without renewal: how soon a follower
    /// takes over from a dead leader.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_duration_seconds: u64,
    /// Address of the users' HTTP server (health, API, console, verification links).
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the metrics server (`/metrics` only: it names every cluster and VM,
    /// so it is for Prometheus, not for users).
    #[arg(long, env = "METRICS_LISTEN_ADDRESS", default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Audience a user's bearer token must be issued for (repeatable), e.g.
    /// `ganeti-operator` with `kubectl create token <sa> --audience ganeti-operator`.
    /// Absent: tokens for the API server itself are accepted (kubeconfig tokens).
    #[arg(long = "token-audience", env = "TOKEN_AUDIENCES", value_delimiter = ',')]
    token_audiences: Vec<String>,
    /// Address of the admission webhook's TLS listener (escalation checks on Roles and
    /// RoleBindings; see manifests/webhook.yaml). Absent: no webhook.
    #[arg(long, env = "WEBHOOK_LISTEN_ADDRESS", requires_all = ["webhook_cert", "webhook_key"])]
    webhook_listen: Option<SocketAddr>,
    /// PEM certificate (chain) of the webhook listener; re-read when the file changes.
    #[arg(long, env = "WEBHOOK_CERT_FILE")]
    webhook_cert: Option<PathBuf>,
    /// PEM private key of the webhook listener.
    #[arg(long, env = "WEBHOOK_KEY_FILE")]
    webhook_key: Option<PathBuf>,
    /// Address of the aggregated API's TLS listener (`compute.ganeti.dev`: VMs, nodes
    /// and jobs as Kubernetes objects, reached through the kube-apiserver; see
    /// manifests/access.yaml). Absent: not served.
    #[arg(long, env = "COMPUTE_API_LISTEN_ADDRESS", requires_all = ["compute_api_cert", "compute_api_key"])]
    compute_api_listen: Option<SocketAddr>,
    /// PEM certificate (chain) of the aggregated API, valid for its Service's DNS name.
    #[arg(long, env = "COMPUTE_API_CERT_FILE")]
    compute_api_cert: Option<PathBuf>,
    /// PEM private key of the aggregated API.
    #[arg(long, env = "COMPUTE_API_KEY_FILE")]
    compute_api_key: Option<PathBuf>,
    /// Groups whose members the webhook lets grant any right (comma-separated).
    #[arg(
        long,
        env = "ADMIN_GROUPS",
        value_delimiter = ',',
        default_value = "ganeti-admins,system:masters"
    )]
    admin_groups: Vec<String>,
    /// Addresses told of refused VM actions on VMs the requester does not own
    /// (comma-separated; needs --smtp-secret). Absent: nobody is mailed.
    #[arg(long, env = "REFUSAL_MAIL_TO", value_delimiter = ',')]
    refusal_mail_to: Vec<String>,
    /// noVNC's files for the console page (Debian's `novnc` package installs them here);
    /// without `core/rfb.js` in it the console page answers 503.
    #[arg(long, env = "NOVNC_DIR", default_value = "/usr/share/novnc")]
    novnc_dir: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// How long stopping controllers may take to finish their reconciles.
const CONTROLLERS_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use ganeti_operator::plugin;
    if std::env::args_os()
        .next()
        .is_some_and(|argv0| plugin::invoked_as_plugin(&argv0))
    {
        std::process::exit(plugin::main(std::env::args_os()).await);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Kubectl { args } => {
            let argv = std::iter::once(plugin::PLUGIN_NAME.into()).chain(args);
            std::process::exit(plugin::main(argv).await)
        }
        Command::Crdgen { out_dir } => crdgen(out_dir),
        Command::Explain(args) => explain(args).await,
        Command::Run(args) => {
            init_tracing(cli.log_format);
            run(*args).await
        }
    }
}

fn crdgen(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = api::crds();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, crd) in &crds {
                let path = dir.join(file);
                std::fs::write(&path, api::crd_yaml(crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            for (_, crd) in &crds {
                print!("---\n{}", api::crd_yaml(crd));
            }
        }
    }
    Ok(())
}

async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let question = ganeti_operator::explain::parse_question(&args.right, args.object.as_deref())
        .map_err(anyhow::Error::msg)?;
    let client = kube_client(args.kubeconfig).await?;
    let (allowed, text) = ganeti_operator::explain::explain(
        &client,
        &args.secrets_namespace,
        &args.user,
        &args.groups,
        &question,
        ganeti_operator::clusters::Policy {
            allow_insecure: args.allow_insecure_rapi,
        },
    )
    .await?;
    print!("{text}");
    if !allowed {
        use std::io::Write as _;
        std::io::stdout().flush()?;
        std::process::exit(1);
    }
    Ok(())
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "ganeti-operator".to_string())
}

async fn kube_client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube_client(args.kubeconfig).await?;
    let version = client
        .apiserver_version()
        .await
        .context("the Kubernetes API server did not answer")?;
    tracing::info!(
        server = %format!("{}.{}", version.major, version.minor),
        secrets_namespace = %args.secrets_namespace,
        allow_insecure_rapi = args.allow_insecure_rapi,
        "connected to the Kubernetes API server"
    );
    let missing = server::missing_crds(&client).await?;
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "CRDs not installed: apply crds/ (readiness stays false until they are)"
        );
    }

    // Before anything else: with several replicas a random per-process key would make
    // about half of all links and console tickets fail on the replica that checks them.
    ganeti_operator::keys::require_shared(
        args.leader_election,
        args.link_key_secret.as_deref(),
        args.link_key.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let inventory = ganeti_operator::inventory::Inventory::default();
    let metrics = Arc::new(Metrics::new(inventory.clone())?);
    let root_key = ganeti_operator::keys::load_root(
        &client,
        &args.secrets_namespace,
        args.link_key_secret.as_deref(),
        args.link_key.as_deref(),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let policy = ganeti_operator::clusters::Policy {
        allow_insecure: args.allow_insecure_rapi,
    };
    // The shared pieces, once: the controllers and the HTTP server both stand on them.
    let shared = Shared {
        client: client.clone(),
        inventory: inventory.clone(),
        metrics: metrics.clone(),
        config: ganeti_operator::config::Config {
            secrets_namespace: args.secrets_namespace,
            smtp_secret: args.smtp_secret,
            mail_unverified: args.mail_unverified,
            public_url: args.public_url,
            rapi_policy: policy,
        },
        keys: Arc::new(ganeti_operator::keys::Keys::derive(&root_key)),
        clusters: Arc::new(ganeti_operator::clusters::Registry::new(policy, metrics.clone())),
        rules: ganeti_operator::access::rules::Rules::watch(client.clone(), inventory),
    };
    let ctx = controllers::Context::new(shared.clone());

    // One token ends everything: the controllers stop taking work, the HTTP server
    // finishes the requests in flight.
    let stop = tokio_util::sync::CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal_stop.cancel();
    });
    let mut leadership = if args.leader_election {
        let identity = std::env::var("POD_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(gethostname)
            + &format!("-{}", std::process::id());
        Leadership::start(
            &client,
            &args.lease_namespace,
            identity,
            args.lease_duration_seconds,
        )
        .await?
    } else {
        Leadership::Disabled
    };
    // Readers run on every replica, writers only on the leader: the GanetiCluster
    // controller reads the clusters everywhere (so every replica's API answers) and
    // writes status only while `leading`; the other controllers write, so they run
    // only under the lease. The inventory metrics stay the leader's (see metrics.rs).
    let elected = matches!(leadership, Leadership::Elected { .. });
    metrics.set_leading(!elected);
    let (leading, leading_rx) = tokio::sync::watch::channel(!elected);
    let cluster_controller = tokio::spawn(controllers::cluster::run(
        ctx.clone(),
        leading_rx,
        stop.clone().cancelled_owned(),
    ));
    let controllers = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move {
            if !leadership.acquired(&stop).await {
                leadership.release().await;
                return Ok(());
            }
            ctx.shared.metrics.set_leading(true);
            let _ = leading.send(true);
            let shutdown = stop.child_token();
            let tasks = [
                tokio::spawn(controllers::application::run(
                    ctx.clone(),
                    shutdown.clone().cancelled_owned(),
                )),
                tokio::spawn(controllers::tags::run(
                    ctx.clone(),
                    shutdown.clone().cancelled_owned(),
                )),
                tokio::spawn(controllers::notification::run(
                    ctx.clone(),
                    shutdown.clone().cancelled_owned(),
                )),
                tokio::spawn(controllers::profile::run(
                    ctx.clone(),
                    shutdown.clone().cancelled_owned(),
                )),
                tokio::spawn(controllers::system_rights::run(ctx.clone(), shutdown.clone())),
                tokio::spawn(controllers::quota::run(ctx.clone(), shutdown.clone())),
            ];
            let lost = leadership.lost(&stop).await;
            if lost {
                tracing::error!("lost the leader lease: stopping the controllers and exiting");
            }
            let _ = leading.send(false);
            shutdown.cancel();
            stop.cancel();
            // In-flight reconciles finish, within a bound: the lease is released (and a
            // follower takes over) well inside Kubernetes' default 30 s grace period.
            let names = [
                "application",
                "tags",
                "notification",
                "profile",
                "system-rights",
                "quota",
            ];
            let stopping = async {
                for (name, task) in names.into_iter().zip(tasks) {
                    task.await?;
                    tracing::debug!(controller = name, "controller stopped");
                }
                Ok::<(), tokio::task::JoinError>(())
            };
            match tokio::time::timeout(CONTROLLERS_STOP_GRACE, stopping).await {
                Ok(stopped) => stopped?,
                Err(_) => tracing::warn!(
                    grace = ?CONTROLLERS_STOP_GRACE,
                    "controllers still busy after the grace period: leaving them unfinished"
                ),
            }
            leadership.release().await;
            if lost {
                anyhow::bail!("lost the leader lease");
            }
            Ok::<(), anyhow::Error>(())
        })
    };
    let state = server::AppState::new(client.clone(), metrics.clone())
        .with_keys(shared.keys.clone())
        .with_api(shared.clone(), args.token_audiences, args.refusal_mail_to)
        .with_console(novnc(&args.novnc_dir));
    tokio::spawn(
        server::spent::SpentTokens::new(client.clone(), &shared.config.secrets_namespace)
            .prune_forever(std::time::Duration::from_secs(600)),
    );
    let compute = compute_api(
        (
            &args.compute_api_listen,
            &args.compute_api_cert,
            &args.compute_api_key,
        ),
        state.api(),
        &shared,
        &stop,
    );
    let metrics_http =
        server::serve_metrics(args.metrics_listen, state.clone(), stop.clone().cancelled_owned());
    let http = server::serve(args.listen, state, stop.clone().cancelled_owned());
    let webhook = webhook(
        &args.webhook_listen,
        &args.webhook_cert,
        &args.webhook_key,
        args.admin_groups,
        &client,
        &stop,
    );
    let (http_result, metrics_result, webhook_result, compute_result) = tokio::join!(
        async {
            let r = http.await;
            // Either server failing (e.g. its address taken) stops the operator.
            stop.cancel();
            r
        },
        async {
            let r = metrics_http.await;
            stop.cancel();
            r
        },
        webhook,
        compute
    );
    stop.cancel();
    controllers.await??;
    // A reader: it stops with the token; bounded like the writers.
    if tokio::time::timeout(CONTROLLERS_STOP_GRACE, cluster_controller)
        .await
        .is_err()
    {
        tracing::warn!("the GanetiCluster controller was still busy after the grace period");
    }
    webhook_result?;
    compute_result?;
    http_result?;
    metrics_result?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Serves the admission webhook if configured; a failure to start it stops the operator.
async fn webhook(
    listen: &Option<SocketAddr>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    admin_groups: Vec<String>,
    client: &kube::Client,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use server::webhook::{WebhookConfig, WebhookState, serve};
    let (Some(listen), Some(cert), Some(key)) = (listen, cert, key) else {
        return Ok(());
    };
    let config = WebhookConfig {
        listen: *listen,
        cert: cert.clone(),
        key: key.clone(),
    };
    let result = serve(
        config,
        WebhookState::new(client.clone(), admin_groups),
        stop.clone().cancelled_owned(),
    )
    .await;
    if result.is_err() {
        stop.cancel();
    }
    result
}

/// Serves the aggregated API if configured, with its catalog following the rules'
/// snapshots; a failure to start it stops the operator.
async fn compute_api(
    (listen, cert, key): (&Option<SocketAddr>, &Option<PathBuf>, &Option<PathBuf>),
    api: Option<std::sync::Arc<server::api::ApiState>>,
    shared: &Shared,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let (Some(listen), Some(cert), Some(key), Some(api)) = (listen, cert, key, api) else {
        return Ok(());
    };
    let catalog = std::sync::Arc::new(ganeti_operator::compute::catalog::Catalog::default());
    let applications = ganeti_operator::compute::follow::applications(shared.client.clone());
    let follow = tokio::spawn(catalog.clone().follow(shared.rules.clone(), applications));
    let config = server::compute::ComputeConfig {
        listen: *listen,
        cert: cert.clone(),
        key: key.clone(),
    };
    let result = server::compute::serve(config, api, catalog, stop.clone().cancelled_owned()).await;
    follow.abort();
    if result.is_err() {
        stop.cancel();
    }
    result
}

/// The noVNC directory, if it holds noVNC.
fn novnc(dir: &std::path::Path) -> Option<PathBuf> {
    if dir.join("core/rfb.js").is_file() {
        Some(dir.to_path_buf())
    } else {
        tracing::warn!(dir = %dir.display(), "no noVNC here (core/rfb.js): the console page answers 503; install Debian's novnc package or set --novnc-dir");
        None
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}
