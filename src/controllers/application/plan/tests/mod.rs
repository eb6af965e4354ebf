use super::*;
use crate::api::application::{
    Decision, DiskRequest, InstanceApplicationSpec, NetworkRequest, Phase, Verdict,
};
use crate::api::cluster::DiskTemplate;
use crate::api::cluster::{Hypervisor, InstanceDefaults, NicMode, SecretKeysRef};
use crate::api::common::Subject;
use crate::api::conditions;
use crate::api::profile::UserProfile;
use crate::api::profile::UserProfileSpec;
use crate::api::quota::{ClusterQuotaSpec, QuotaLimits};
use crate::inventory::{ClusterInventory, Instance};
use crate::rapi::GanetiFailure;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

mod adopt;
mod create;
mod evaluate;
mod network;
mod status;
mod steps;

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa alice@a";
const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb alice@b";

fn now() -> Timestamp {
    "2026-11-24T12:00:00Z".parse().unwrap()
}

fn app(name: &str, owner: Subject) -> InstanceApplication {
    let mut a = InstanceApplication::new(
        name,
        InstanceApplicationSpec {
            mode: crate::api::application::Mode::Create,
            instance: None,
            cluster: Some("lab".into()),
            hostname: format!("{name}.example.org"),
            vcpus: 2,
            memory: "1Gi".into(),
            disks: vec![DiskRequest { size: "10Gi".into() }],
            os: None,
            network: None,
            ssh_keys: vec![KEY_A.into()],
            owner,
            applicant: Some("alice".into()),
            contact: None,
            purpose: "tests".into(),
            decision: None,
        },
    );
    a.metadata.namespace = Some("team".into());
    a.metadata.uid = Some(format!("uid-{name}"));
    a.metadata.generation = Some(1);
    a
}

fn approve(mut a: InstanceApplication) -> InstanceApplication {
    a.spec.decision = Some(Decision {
        verdict: Verdict::Approved,
        reason: None,
        decided_by: Some("admin".into()),
    });
    a
}

fn spec() -> GanetiClusterSpec {
    GanetiClusterSpec {
        rapi_url: "https://lab:5080".into(),
        credentials_secret: SecretKeysRef {
            name: "rapi".into(),
            username_key: None,
            password_key: None,
        },
        ca_bundle: None,
        insecure: None,
        sync_interval: None,
        tag_prefix: None,
        management_policy: None,
        gwm: None,
        allowed: None,
        defaults: InstanceDefaults {
            disk_template: None,
            os: Some("noop".into()),
            hypervisor: Some(Hypervisor::Fake),
            nic_mode: Some(NicMode::Routed),
            nic_link: Some("rt".into()),
            network: None,
            iallocator: None,
            primary_node: Some("node1".into()),
            ssh_keys_os_parameter: Some("ssh_authorized_keys".into()),
        },
    }
}

fn catalog() -> Catalog {
    Catalog {
        operating_systems: vec!["noop".into(), "debootstrap+default".into()],
        disk_templates: vec!["plain".into(), "diskless".into()],
    }
}

fn inventory(instances: Vec<Instance>) -> ClusterInventory {
    ClusterInventory {
        cluster: "lab".into(),
        instances,
        tag_prefix: crate::tags::DEFAULT_PREFIX.into(),
        reachable: true,
        ..Default::default()
    }
}

fn quota(instances: u32) -> ClusterQuota {
    ClusterQuota::new(
        "default",
        ClusterQuotaSpec {
            cluster: "lab".into(),
            subject: None,
            limits: QuotaLimits {
                instances: Some(instances),
                ..Default::default()
            },
        },
    )
}

struct World {
    spec: GanetiClusterSpec,
    inventory: ClusterInventory,
    catalog: Catalog,
    quotas: Vec<ClusterQuota>,
}

impl World {
    fn new() -> Self {
        Self {
            spec: spec(),
            inventory: inventory(vec![]),
            catalog: catalog(),
            quotas: vec![],
        }
    }

    fn evaluate(
        &self,
        a: &InstanceApplication,
        others: &[InstanceApplication],
        self_approve: bool,
    ) -> Evaluation {
        evaluate(&Pending {
            app: a,
            cluster: ClusterView::Ready {
                name: "lab",
                spec: &self.spec,
                inventory: &self.inventory,
                catalog: &self.catalog,
            },
            quotas: &self.quotas,
            applications: others,
            may_self_approve: self_approve,
            now: now(),
        })
    }
}

fn condition<'a>(
    e: &'a Evaluation,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::get(&e.status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

fn owned(name: &str, owner: &Subject) -> Instance {
    Instance {
        name: name.into(),
        vcpus: 1,
        memory_mib: 128,
        tags: vec![crate::tags::format_owner(crate::tags::DEFAULT_PREFIX, owner).unwrap()],
        ..Default::default()
    }
}

/// An instance as the application's own create job makes it: owner tag and marker.
fn made_by(a: &InstanceApplication, name: &str, uuid: &str) -> Instance {
    let mut i = owned(name, &a.spec.owner);
    i.uuid = uuid.into();
    i.tags.push(marker_tag(a, crate::tags::DEFAULT_PREFIX).unwrap());
    i
}
