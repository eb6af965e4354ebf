//! Every right a Role can hold does something: each has a code path that checks it and
//! a row in the README's rights table. The `match`es are exhaustive, so a new right
//! does not compile here until someone says where it is enforced.

use ganeti_operator::access::action::Action;
use ganeti_operator::access::cluster_right_for;
use ganeti_operator::api::role::{ClusterRight, SystemRight, VmRight};
use ganeti_operator::authz::holders::ADMISSION_RIGHTS;
use std::path::Path;

fn source(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// `file` checks the right where it contains `needle` outside its tests.
fn checked_in(file: &str, needle: &str) -> bool {
    let text = source(file);
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.contains(needle)
}

fn action_for(right: VmRight) -> bool {
    Action::ALL.iter().any(|a| a.right() == right)
}

#[test]
fn every_vm_right_has_an_enforcing_path() {
    for &r in VmRight::ALL {
        let enforced = match r {
            VmRight::View => checked_in("src/server/api/views.rs", "VmRight::View"),
            VmRight::Console => checked_in("src/server/console/mod.rs", "VmRight::Console"),
            VmRight::Admin => checked_in("src/authz/index.rs", "VM_ADMIN"),
            VmRight::Start
            | VmRight::Shutdown
            | VmRight::Reboot
            | VmRight::Rename
            | VmRight::Reinstall
            | VmRight::Modify
            | VmRight::Destroy
            | VmRight::Tags
            | VmRight::Migrate
            | VmRight::Export
            | VmRight::ReplaceDisks
            | VmRight::Lock
            | VmRight::Isolate => action_for(r),
        };
        assert!(enforced, "vms.{r} has no enforcing code path");
    }
}

#[test]
fn every_cluster_right_has_an_enforcing_path() {
    let needed_by_action = |c: ClusterRight| {
        VmRight::ALL
            .iter()
            .any(|v| cluster_right_for(*v) == Some(c) && action_for(*v))
    };
    for &r in ClusterRight::ALL {
        let enforced = match r {
            ClusterRight::View => checked_in("src/server/api/clusters.rs", "ClusterRight::View"),
            ClusterRight::CreateVm => checked_in(
                "src/controllers/application/evaluate.rs",
                "ClusterRight::CreateVm",
            ),
            ClusterRight::Tags => checked_in("src/server/api/clusters.rs", "ClusterRight::Tags"),
            ClusterRight::Admin => checked_in("src/authz/index.rs", "CL_ADMIN"),
            ClusterRight::Migrate | ClusterRight::Export | ClusterRight::ReplaceDisks => needed_by_action(r),
        };
        assert!(enforced, "clusters.{r} has no enforcing code path");
    }
}

#[test]
fn every_system_right_has_an_enforcing_path() {
    let admission = source("manifests/admission.yaml");
    for &r in SystemRight::ALL {
        let enforced = match r {
            SystemRight::Applications
            | SystemRight::Notifications
            | SystemRight::Quotas
            | SystemRight::Roles
            | SystemRight::Users => {
                ADMISSION_RIGHTS.contains(&r)
                    && admission.contains(&format!("'{r}.allowedUsers'"))
                    && admission.contains(&format!("'{r}.forbiddenGroups'"))
            }
            SystemRight::Jobs => checked_in("src/server/api/jobs.rs", "SystemRight::Jobs"),
            SystemRight::Nodes => checked_in("src/server/api/clusters.rs", "SystemRight::Nodes"),
            SystemRight::Audit => checked_in("src/server/api/events.rs", "SystemRight::Audit"),
        };
        assert!(enforced, "system.{r} has no enforcing code path");
    }
}

#[test]
fn the_readme_lists_every_right() {
    let readme = source("README.md");
    let table = readme
        .split("### Rights")
        .nth(1)
        .expect("the README has a Rights section")
        .split("\n### ")
        .next()
        .unwrap_or_default();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `")).collect();
    let names = VmRight::ALL
        .iter()
        .map(|r| format!("vms.{r}"))
        .chain(ClusterRight::ALL.iter().map(|r| format!("clusters.{r}")))
        .chain(SystemRight::ALL.iter().map(|r| format!("system.{r}")));
    let mut listed = 0;
    for name in names {
        assert!(
            rows.iter().any(|row| row.starts_with(&format!("| `{name}` |"))),
            "the README's rights table has no row for {name}"
        );
        listed += 1;
    }
    assert_eq!(
        rows.len(),
        listed,
        "the README's rights table lists a right that does not exist"
    );
}
