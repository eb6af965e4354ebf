//! `ganeti-operator`: the command line (run, crdgen), wiring and graceful shutdown.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
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
    Run(RunArgs),
    /// Print every CRD as one multi-document YAML stream.
    Crdgen {
        /// Write one file per kind into this folder instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kubeconfig file. Absent: $KUBECONFIG, ~/.kube/config, then the in-cluster ServiceAccount.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace the operator reads Secrets (RAPI and SMTP credentials) from.
    #[arg(long, env = "SECRETS_NAMESPACE", default_value = "ganeti-system")]
    secrets_namespace: String,
    /// Address of the HTTP server (health, metrics, API, console).
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out_dir } => crdgen(out_dir),
        Command::Run(args) => {
            init_tracing(cli.log_format);
            run(args).await
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
        "connected to the Kubernetes API server"
    );
    let missing = server::missing_crds(&client).await?;
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "CRDs not installed: apply crds/ (readiness stays false until they are)"
        );
    }

    let inventory = ganeti_operator::inventory::Inventory::default();
    let metrics = Arc::new(Metrics::new(inventory.clone())?);
    let config = controllers::Config {
        secrets_namespace: args.secrets_namespace,
    };
    let ctx = controllers::Context::new(client.clone(), inventory, metrics.clone(), config);

    // One token ends everything: the controllers stop taking work, the HTTP server
    // finishes the requests in flight.
    let stop = tokio_util::sync::CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal_stop.cancel();
    });
    let clusters = tokio::spawn(controllers::cluster::run(
        ctx.clone(),
        stop.clone().cancelled_owned(),
    ));
    let state = server::AppState::new(client.clone(), metrics.clone());
    let http = server::serve(args.listen, state, stop.clone().cancelled_owned());
    let http_result = http.await;
    stop.cancel();
    clusters.await?;
    http_result?;
    tracing::info!("shut down cleanly");
    Ok(())
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
