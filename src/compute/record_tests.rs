//! A record renders exactly the object, and the Table rows, that the catalog served when
//! it held full `GanetiInstance`s: byte for byte.

use super::*;
use crate::compute::catalog::Object;
use crate::compute::table::{IncludeObject, Table};
use crate::inventory::Instance;

fn inventory(reachable: bool) -> ClusterInventory {
    ClusterInventory {
        cluster: "lab".into(),
        tag_prefix: "ganeti-operator.io".into(),
        reachable,
        ..Default::default()
    }
}

/// VMs with what changes how an object renders: owners of each kind (and one that is no
/// label value), no owner, lock and isolation, 0, 1 and 2 IPs, secondaries, no
/// creation time or UUID, an upper-case name, a node that is no label value.
fn vms() -> Vec<Instance> {
    let vm = |name: &str, tags: &[&str]| Instance {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        status: "running".into(),
        admin_up: true,
        running: true,
        primary_node: "node1.example.org".into(),
        os: "debootstrap+default".into(),
        hypervisor: "kvm".into(),
        disk_template: "plain".into(),
        vcpus: 2,
        memory_mib: 2048,
        disk_mib: 10 * 1024 + 512,
        ips: vec!["192.0.2.10".into()],
        macs: vec!["aa:00:00:00:00:01".into()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ctime: Some(1_700_000_000.5),
        ..Default::default()
    };
    vec![
        vm("vm1.example.org", &["ganeti-operator.io:owner:U:alice"]),
        Instance {
            ips: vec![],
            macs: vec![],
            secondary_nodes: vec!["node2.example.org".into()],
            disk_template: "drbd".into(),
            ..vm(
                "VM2.Example.org",
                &["ganeti-operator.io:owner:G:ops", "ganetimgr:adminlock", "other"],
            )
        },
        Instance {
            ips: vec!["192.0.2.11".into(), "2001:db8::11".into()],
            status: "ADMIN_down".into(),
            admin_up: false,
            running: false,
            ctime: None,
            uuid: String::new(),
            ..vm("vm3", &["ganetimgr:user:bob", "ganetimgr:isolate"])
        },
        Instance {
            primary_node: "-node_".into(),
            ..vm("vm4", &["ganeti-operator.io:owner:U:carol@example.org"])
        },
        vm("vm5", &[]),
    ]
}

fn applications() -> Applications {
    Applications::from([(
        "uuid-vm1.example.org".to_string(),
        ApplicationRef {
            namespace: "team".into(),
            name: "app-1".into(),
        },
    )])
}

/// (what the catalog served before, the record), with resourceVersions 1, 2, ...
fn pairs(reachable: bool) -> Vec<(GanetiInstance, InstanceRecord)> {
    let inventory = inventory(reachable);
    let applications = applications();
    let mut strings = Interner::default();
    vms()
        .iter()
        .zip(1..)
        .map(|(vm, rv)| {
            let mut object = GanetiInstance::from_inventory(&inventory, vm).made_by(&applications);
            object.metadata.resource_version = Some(rv.to_string());
            let mut record = InstanceRecord::new(&inventory, vm, &applications, &mut strings);
            Object::set_resource_version(&mut record, rv);
            (object, record)
        })
        .collect()
}

#[test]
fn a_record_renders_the_object_byte_for_byte() {
    for reachable in [true, false] {
        for (object, record) in pairs(reachable) {
            assert_eq!(record.render(), object);
            assert_eq!(
                serde_json::to_vec(&record).unwrap(),
                serde_json::to_vec(&object).unwrap()
            );
            assert_eq!(
                serde_json::to_value(&record).unwrap(),
                serde_json::to_value(&object).unwrap()
            );
            assert_eq!(record.label_map(), object.metadata.labels.clone().unwrap());
        }
    }
}

#[test]
fn pre_rendered_table_rows_are_the_serialised_ones() {
    let pairs = pairs(true);
    let objects: Vec<&GanetiInstance> = pairs.iter().map(|(o, _)| o).collect();
    let records: Vec<&InstanceRecord> = pairs.iter().map(|(_, r)| r).collect();
    let now = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap();
    for include in [
        IncludeObject::None,
        IncludeObject::Metadata,
        IncludeObject::Object,
    ] {
        for rv in [Some("7".to_string()), None] {
            for columns in [true, false] {
                let before = serde_json::to_vec(&Table::new(
                    objects.iter().copied(),
                    include,
                    rv.clone(),
                    columns,
                    now,
                ))
                .unwrap();
                // Twice: rendering, then copying what was rendered.
                for _ in 0..2 {
                    let table = Table::new(records.iter().copied(), include, rv.clone(), columns, now);
                    assert_eq!(
                        String::from_utf8(table.to_vec().unwrap()).unwrap(),
                        String::from_utf8(before.clone()).unwrap()
                    );
                    // And as a watch sends it (serialised, not pre-rendered).
                    assert_eq!(serde_json::to_vec(&table).unwrap(), before);
                }
            }
        }
    }
    // An empty table too.
    let none: Vec<&InstanceRecord> = Vec::new();
    assert_eq!(
        Table::new(none, IncludeObject::Metadata, None, true, now)
            .to_vec()
            .unwrap(),
        serde_json::to_vec(&Table::new(
            Vec::<&GanetiInstance>::new(),
            IncludeObject::Metadata,
            None,
            true,
            now
        ))
        .unwrap()
    );
}

#[test]
fn a_new_version_renders_a_new_row() {
    let (_, mut record) = pairs(true).remove(0);
    let now = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let first = Table::new([&record], IncludeObject::Metadata, None, false, now)
        .to_vec()
        .unwrap();
    Object::set_resource_version(&mut record, 99);
    let second = Table::new([&record], IncludeObject::Metadata, None, false, now)
        .to_vec()
        .unwrap();
    let text = String::from_utf8(second).unwrap();
    assert!(text.contains("\"resourceVersion\":\"99\""), "{text}");
    assert_ne!(first, text.into_bytes());
}

#[test]
fn equal_records_are_the_same_and_share_their_strings() {
    let inventory = inventory(true);
    let vm = &vms()[1];
    let mut strings = Interner::default();
    let a = InstanceRecord::new(&inventory, vm, &Applications::new(), &mut strings);
    let b = InstanceRecord::new(&inventory, vm, &Applications::new(), &mut strings);
    assert!(a.same(&b));
    assert!(Arc::ptr_eq(&a.f.primary_node, &b.f.primary_node));
    let c = InstanceRecord::new(&inventory, vm, &applications(), &mut strings);
    assert!(a.same(&c), "vm2 was made by no application");
    let d = InstanceRecord::new(
        &inventory,
        &Instance {
            status: "ERROR_down".into(),
            ..vm.clone()
        },
        &Applications::new(),
        &mut strings,
    );
    assert!(!a.same(&d));
}
