//! The plugin's command line: `kubectl ganeti <command>`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-ganeti",
    bin_name = "kubectl ganeti",
    version,
    about = "Use your Ganeti VMs and file VM applications, with your kubeconfig",
    after_help = "NAME is a GanetiInstance (`<cluster>.<instance>`, see `list`) or a Ganeti instance name."
)]
pub struct PluginCli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// How to reach the API server: kubectl's own flags, read as kubectl reads them.
#[derive(Args, Debug, Default, Clone)]
pub struct ConnArgs {
    /// Kubeconfig file. Absent: $KUBECONFIG (a list, merged as kubectl does), then
    /// ~/.kube/config, then the in-cluster ServiceAccount.
    #[arg(long, global = true, help_heading = "Kubectl options")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context. Absent: the current context.
    #[arg(long, global = true, help_heading = "Kubectl options")]
    pub context: Option<String>,
    /// Namespace of InstanceApplications. Absent: the context's namespace.
    #[arg(short = 'n', long, global = true, help_heading = "Kubectl options")]
    pub namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// List your VMs.
    List(ListArgs),
    /// Start a VM.
    Start(NameArg),
    /// Shut a VM down.
    Stop(NameArg),
    /// Reboot a VM.
    Reboot(NameArg),
    /// Migrate a VM to its secondary node (or, with --target-node, to another node).
    Migrate(MigrateArgs),
    /// Get a single-use console ticket and print the console page's URL.
    Console(ConsoleArgs),
    /// Relay a local TCP port to the VM's VNC console (for a VNC viewer).
    Vnc(VncArgs),
    /// File an InstanceApplication: ask for a new VM.
    ApplyFor(ApplyArgs),
    /// Approve an InstanceApplication.
    Approve(ApproveArgs),
    /// Reject an InstanceApplication.
    Reject(RejectArgs),
    /// Admins: users inactive for a while and their VMs, VMs whose owner is gone,
    /// profiles without VMs.
    Users(UsersArgs),
    /// Admins: applications per cluster and phase with the time to decision and to VM,
    /// VMs and resources per owner (the service statistics dashboard as tables).
    Stats(StatsArgs),
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Output format. Absent: tables.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ReportOutput>,
}

#[derive(Args, Debug)]
pub struct UsersArgs {
    /// Days without a request (UserProfile `status.lastSeen`) that make a user inactive.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub inactive_days: u32,
    /// Output format. Absent: tables.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ReportOutput>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportOutput {
    Json,
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// The VM: a GanetiInstance name or a Ganeti instance name.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only the VMs of this GanetiCluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Label selector, e.g. `compute.ganeti.dev/owner-group=team-a`.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Output format. Absent: a table.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Output>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The table with more columns.
    Wide,
    /// `ganetiinstance.compute.ganeti.dev/<name>`, one a line.
    Name,
    /// The list as the API server sent it.
    Json,
    /// The list as YAML.
    Yaml,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The VM.
    pub name: String,
    /// Live (the VM keeps running) or non-live. Absent: the hypervisor's default.
    #[arg(long, value_enum)]
    pub mode: Option<MigrateMode>,
    /// Node to migrate to (clusters with external storage). Absent: the secondary node.
    #[arg(long)]
    pub target_node: Option<String>,
    /// Clean up after a failed migration instead of migrating.
    #[arg(long)]
    pub cleanup: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrateMode {
    Live,
    NonLive,
}

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// The VM.
    pub name: String,
    /// Open the URL with xdg-open.
    #[arg(long)]
    pub open: bool,
}

#[derive(Args, Debug)]
pub struct VncArgs {
    /// The VM.
    pub name: String,
    /// Local port to listen on. Absent: any free port.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Local address to listen on (anyone who reaches it gets the VM's screen).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The VM's fully qualified host name; it becomes the Ganeti instance name.
    #[arg(long, required_unless_present = "adopt", conflicts_with = "adopt")]
    pub hostname: Option<String>,
    /// Virtual CPUs.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256), required_unless_present = "adopt", conflicts_with = "adopt")]
    pub vcpus: Option<u32>,
    /// Memory as a quantity, e.g. `2Gi`.
    #[arg(
        long,
        value_name = "SIZE",
        required_unless_present = "adopt",
        conflicts_with = "adopt"
    )]
    pub memory: Option<String>,
    /// A disk's size as a quantity, e.g. `20Gi` (repeat for each disk).
    #[arg(
        long = "disk",
        value_name = "SIZE",
        required_unless_present = "adopt",
        conflicts_with = "adopt"
    )]
    pub disks: Vec<String>,
    /// Ask for an owner for this existing VM (one without an owner) instead of a new VM:
    /// an admin's approval tags it as yours. Needs --cluster; no sizes.
    #[arg(long, value_name = "INSTANCE", requires = "cluster", conflicts_with = "os")]
    pub adopt: Option<String>,
    /// What the VM is for; admins read this when deciding.
    #[arg(long)]
    pub purpose: String,
    /// GanetiCluster to create the VM on (or that the VM to adopt is on). Absent: an
    /// admin chooses.
    #[arg(long)]
    pub cluster: Option<String>,
    /// OS definition with variant. Absent: the cluster's default.
    #[arg(long)]
    pub os: Option<String>,
    /// Let this group of yours own the VM instead of you.
    #[arg(long)]
    pub owner_group: Option<String>,
    /// The application's name. Absent: the host name's first label and a random suffix.
    #[arg(long)]
    pub name: Option<String>,
    /// Only show the application: `client` (default) prints it as it would be sent,
    /// `server` has the API server validate it without saving it.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: Option<DryRun>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRun {
    Client,
    Server,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The InstanceApplication.
    pub name: String,
    /// Why (shown to the applicant).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    /// The InstanceApplication.
    pub name: String,
    /// Why (required; shown to the applicant).
    #[arg(long)]
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<PluginCli, clap::Error> {
        PluginCli::try_parse_from(std::iter::once("kubectl-ganeti").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        PluginCli::command().debug_assert();
    }

    #[test]
    fn list_takes_cluster_selector_and_output() {
        let cli = parse(&["list", "--cluster", "lab", "-l", "a=b", "-o", "wide"]).unwrap();
        let PluginCommand::List(list) = cli.command else {
            panic!("not list: {:?}", cli.command)
        };
        assert_eq!(list.cluster.as_deref(), Some("lab"));
        assert_eq!(list.selector.as_deref(), Some("a=b"));
        assert_eq!(list.output, Some(Output::Wide));
        assert!(parse(&["list", "-o", "table"]).is_err());
    }

    #[test]
    fn kubectl_flags_are_accepted_before_and_after_the_command() {
        let cli = parse(&["--context", "lab", "list", "--kubeconfig", "/k", "-n", "x"]).unwrap();
        assert_eq!(cli.conn.context.as_deref(), Some("lab"));
        assert_eq!(cli.conn.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(cli.conn.namespace.as_deref(), Some("x"));
    }

    #[test]
    fn migrate_options() {
        let cli = parse(&[
            "migrate",
            "vm1",
            "--mode",
            "non-live",
            "--target-node",
            "n2",
            "--cleanup",
        ])
        .unwrap();
        let PluginCommand::Migrate(m) = cli.command else {
            panic!("not migrate")
        };
        assert_eq!((m.name.as_str(), m.mode), ("vm1", Some(MigrateMode::NonLive)));
        assert_eq!((m.target_node.as_deref(), m.cleanup), (Some("n2"), true));
        assert!(parse(&["migrate", "vm1", "--mode", "fast"]).is_err());
        assert!(parse(&["migrate"]).is_err(), "the VM is required");
    }

    #[test]
    fn vnc_defaults_to_loopback_and_any_port() {
        let PluginCommand::Vnc(v) = parse(&["vnc", "vm1"]).unwrap().command else {
            panic!("not vnc")
        };
        assert_eq!((v.port, v.address.to_string().as_str()), (0, "127.0.0.1"));
        assert!(parse(&["vnc", "vm1", "--address", "localhost"]).is_err());
    }

    #[test]
    fn apply_for_needs_the_sizes_and_a_purpose() {
        let base = [
            "apply-for",
            "--hostname",
            "web1.example.org",
            "--vcpus",
            "2",
            "--memory",
            "2Gi",
            "--purpose",
            "web",
        ];
        assert!(parse(&base).is_err(), "a disk is required");
        let mut args = base.to_vec();
        args.extend(["--disk", "20Gi", "--disk", "5Gi", "--dry-run"]);
        let PluginCommand::ApplyFor(a) = parse(&args).unwrap().command else {
            panic!("not apply-for")
        };
        assert_eq!(a.disks, ["20Gi", "5Gi"]);
        assert_eq!(a.dry_run, Some(DryRun::Client));
        args.pop();
        args.push("--dry-run=server");
        let PluginCommand::ApplyFor(a) = parse(&args).unwrap().command else {
            panic!("not apply-for")
        };
        assert_eq!(a.dry_run, Some(DryRun::Server));
        args.pop();
        args[4] = "0";
        assert!(parse(&args).is_err(), "0 vcpus");
        args[4] = "257";
        assert!(parse(&args).is_err(), "257 vcpus");
    }

    #[test]
    fn apply_for_adopt_needs_a_cluster_and_no_sizes() {
        let adopt = ["apply-for", "--adopt", "old.example.org", "--purpose", "mine"];
        assert!(parse(&adopt).is_err(), "--adopt needs --cluster");
        let mut args = adopt.to_vec();
        args.extend(["--cluster", "lab"]);
        let PluginCommand::ApplyFor(a) = parse(&args).unwrap().command else {
            panic!("not apply-for")
        };
        assert_eq!(a.adopt.as_deref(), Some("old.example.org"));
        assert_eq!((a.hostname, a.vcpus, a.memory), (None, None, None));
        for extra in [
            ["--vcpus", "2"],
            ["--disk", "1Gi"],
            ["--hostname", "x.org"],
            ["--os", "debian"],
        ] {
            let mut more = args.clone();
            more.extend(extra);
            assert!(parse(&more).is_err(), "--adopt with {extra:?}");
        }
    }

    #[test]
    fn reject_needs_a_reason_approve_does_not() {
        assert!(parse(&["reject", "app1"]).is_err());
        assert!(parse(&["reject", "app1", "--reason", "no"]).is_ok());
        assert!(parse(&["approve", "app1"]).is_ok());
    }
}
