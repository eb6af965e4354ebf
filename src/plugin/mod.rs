//! `kubectl ganeti`: a kubectl plugin in the operator's binary. It runs when the binary
//! is invoked as `kubectl-ganeti` (a symlink or copy on PATH) or as
//! `ganeti-operator kubectl ...`, and talks to the operator's aggregated API
//! (`compute.ganeti.dev/v1alpha1`) and the InstanceApplication CRD through the
//! kube-apiserver, with the user's own kubeconfig.

pub mod actions;
pub mod apply;
pub mod cli;
pub mod client;
pub mod instance;
pub mod list;
pub mod resolve;
pub mod stats;
pub mod users;
pub mod vnc;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use crate::api::application::Verdict;
use clap::Parser as _;
use cli::{PluginCli, PluginCommand};
use std::ffi::OsString;
use std::path::Path;

/// The executable name kubectl looks for (`kubectl ganeti` runs `kubectl-ganeti`).
pub const PLUGIN_NAME: &str = "kubectl-ganeti";

/// Whether the binary was invoked as the plugin (its argv[0]'s base name).
pub fn invoked_as_plugin(argv0: &std::ffi::OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|name| name == PLUGIN_NAME)
}

/// Runs the plugin on a command line whose first item is the program name; returns the
/// process's exit code (errors are printed on stderr).
pub async fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match PluginCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return error.exit_code();
        }
    };
    match run(cli).await {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {}", render(&error));
            1
        }
    }
}

/// An error and its causes on one line, leaving out causes the line already says (kube's
/// errors repeat their sources in their own messages).
pub fn render(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Connects with the user's kubeconfig and runs the command.
pub async fn run(cli: PluginCli) -> anyhow::Result<()> {
    let client = client::connect(&cli.conn).await?;
    let namespace = client::namespace(&cli.conn, &client);
    run_with(&client, &namespace, cli.command).await
}

/// Runs a command with a given client; `namespace` is where InstanceApplications are.
pub async fn run_with(client: &kube::Client, namespace: &str, command: PluginCommand) -> anyhow::Result<()> {
    use actions::Action;
    match command {
        PluginCommand::List(args) => list::list(client, &args).await,
        PluginCommand::Start(vm) => actions::act(client, &vm.name, Action::Start).await,
        PluginCommand::Stop(vm) => actions::act(client, &vm.name, Action::Shutdown).await,
        PluginCommand::Reboot(vm) => actions::act(client, &vm.name, Action::Reboot).await,
        PluginCommand::Migrate(args) => actions::act(client, &args.name, Action::migrate(&args)).await,
        PluginCommand::Console(args) => actions::console(client, &args.name, args.open).await,
        PluginCommand::Vnc(args) => vnc::serve(client, &args.name, args.address, args.port).await,
        PluginCommand::ApplyFor(args) => apply::apply_for(client, namespace, &args).await,
        PluginCommand::Approve(args) => {
            let reason = args.reason.as_deref();
            apply::decide(client, namespace, &args.name, Verdict::Approved, reason).await
        }
        PluginCommand::Reject(args) => {
            let reason = Some(args.reason.as_str());
            apply::decide(client, namespace, &args.name, Verdict::Rejected, reason).await
        }
        PluginCommand::Stats(args) => stats::print(client, args.output.is_some()).await,
        PluginCommand::Users(args) => users::users(client, args.inactive_days, args.output.is_some()).await,
    }
}
