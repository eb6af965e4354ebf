//! `start`, `stop`, `reboot`, `migrate` and `console`: POSTs to the VM's subresources.

use super::cli::{MigrateArgs, MigrateMode};
use super::client::{About, explain, post};
use super::instance::{ActionResult, ConsoleTicket};
use super::resolve::{instance_path, resolve};
use anyhow::Context as _;
use kube::Client;
use serde_json::json;

/// A power or placement action on a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start,
    Shutdown,
    Reboot,
    Migrate {
        mode: Option<MigrateMode>,
        target_node: Option<String>,
        cleanup: bool,
    },
}

impl Action {
    pub fn migrate(args: &MigrateArgs) -> Self {
        Action::Migrate {
            mode: args.mode,
            target_node: args.target_node.clone(),
            cleanup: args.cleanup,
        }
    }

    /// The subresource of `ganetiinstances/{name}` that does it.
    pub fn subresource(&self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Shutdown => "shutdown",
            Action::Reboot => "reboot",
            Action::Migrate { .. } => "migrate",
        }
    }

    /// The request body: `{}`, or migrate's options (unset ones left to Ganeti).
    pub fn body(&self) -> serde_json::Value {
        let Action::Migrate {
            mode,
            target_node,
            cleanup,
        } = self
        else {
            return json!({});
        };
        let mut body = json!({ "cleanup": cleanup });
        if let Some(mode) = mode {
            body["mode"] = json!(mode);
        }
        if let Some(node) = target_node {
            body["targetNode"] = json!(node);
        }
        body
    }
}

/// Submits the action; prints the Ganeti job id on stdout (what it is on stderr).
pub async fn act(client: &Client, name: &str, action: Action) -> anyhow::Result<()> {
    let vm = resolve(client, name).await?;
    let path = instance_path(vm.name(), Some(action.subresource()));
    let done: ActionResult = match post(client, &path, &action.body()).await {
        Ok(done) => done,
        Err(error) => return Err(explain(client, error, About::Vm(name)).await),
    };
    let instance = match done.instance.as_str() {
        "" => vm.instance_name(),
        instance => instance,
    };
    let cluster = match done.cluster.as_str() {
        "" => vm.spec.cluster.as_str(),
        cluster => cluster,
    };
    eprintln!(
        "{} of {instance} (cluster {cluster}) submitted as Ganeti job {}",
        action.subresource(),
        done.job
    );
    println!("{}", done.job);
    Ok(())
}

/// Gets a console ticket and prints the console page's URL (opens it with `open`).
pub async fn console(client: &Client, name: &str, open: bool) -> anyhow::Result<()> {
    let vm = resolve(client, name).await?;
    let path = instance_path(vm.name(), Some("console"));
    let ticket: ConsoleTicket = match post(client, &path, &json!({})).await {
        Ok(ticket) => ticket,
        Err(error) => return Err(explain(client, error, About::Vm(name)).await),
    };
    println!("{}", ticket.url);
    match ticket.expires_in_seconds {
        Some(seconds) => eprintln!("single use; open it within {seconds} s"),
        None => eprintln!("single use"),
    }
    if open {
        let status = std::process::Command::new("xdg-open")
            .arg(&ticket.url)
            .stdin(std::process::Stdio::null())
            .status()
            .context("running xdg-open (open the URL above yourself)")?;
        anyhow::ensure!(
            status.success(),
            "xdg-open failed ({status}): open the URL above yourself"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_actions_send_an_empty_object() {
        for (action, sub) in [
            (Action::Start, "start"),
            (Action::Shutdown, "shutdown"),
            (Action::Reboot, "reboot"),
        ] {
            assert_eq!(action.subresource(), sub);
            assert_eq!(action.body(), json!({}));
        }
    }

    #[test]
    fn migrate_sends_only_what_was_asked() {
        let all = Action::Migrate {
            mode: Some(MigrateMode::NonLive),
            target_node: Some("node2".into()),
            cleanup: true,
        };
        assert_eq!(all.subresource(), "migrate");
        assert_eq!(
            all.body(),
            json!({"mode": "non-live", "targetNode": "node2", "cleanup": true})
        );
        let live = Action::Migrate {
            mode: Some(MigrateMode::Live),
            target_node: None,
            cleanup: false,
        };
        assert_eq!(live.body(), json!({"mode": "live", "cleanup": false}));
        let default = Action::Migrate {
            mode: None,
            target_node: None,
            cleanup: false,
        };
        assert_eq!(default.body(), json!({"cleanup": false}));
    }
}
