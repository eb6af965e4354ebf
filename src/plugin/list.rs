//! `kubectl ganeti list`: the caller's VMs (the server lists only what the caller may see).

use super::cli::{ListArgs, Output};
use super::client::{About, INSTANCES, explain, get, with_query};
use super::instance::{GanetiInstance, InstanceList};
use kube::Client;

pub async fn list(client: &Client, args: &ListArgs) -> anyhow::Result<()> {
    let path = list_path(args.cluster.as_deref(), args.selector.as_deref());
    // Kept as sent for -o json|yaml: fields this version does not know survive.
    let raw: serde_json::Value = match get(client, &path).await {
        Ok(raw) => raw,
        Err(error) => return Err(explain(client, error, About::Vms).await),
    };
    match args.output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&raw)?),
        Some(Output::Yaml) => print!("{}", serde_yaml::to_string(&raw)?),
        output => {
            let list: InstanceList = serde_json::from_value(raw)?;
            if list.items.is_empty() {
                eprintln!("No VMs found.");
            } else if output == Some(Output::Name) {
                for vm in &list.items {
                    println!("ganetiinstance.compute.ganeti.dev/{}", vm.name());
                }
            } else {
                print!("{}", table(&list.items, output == Some(Output::Wide)));
            }
        }
    }
    Ok(())
}

/// The list request: `--cluster` as a field selector, `-l` as the label selector.
pub fn list_path(cluster: Option<&str>, selector: Option<&str>) -> String {
    let field = cluster.map(|c| format!("spec.cluster={c}"));
    let mut query = Vec::new();
    if let Some(field) = &field {
        query.push(("fieldSelector", field.as_str()));
    }
    if let Some(selector) = selector {
        query.push(("labelSelector", selector));
    }
    with_query(INSTANCES, &query)
}

/// The VMs as kubectl prints tables: a header, columns padded to their widest cell.
pub fn table(vms: &[GanetiInstance], wide: bool) -> String {
    let mut header = vec!["NAME", "CLUSTER", "STATE", "NODE", "VCPUS", "MEMORY", "IPS"];
    if wide {
        header.extend(["INSTANCE", "DISK", "OS", "OWNER", "SECONDARY", "RUN"]);
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for vm in vms {
        let s = &vm.status;
        let mut row = vec![
            vm.name().to_string(),
            vm.spec.cluster.clone(),
            s.state.clone().unwrap_or_else(|| "<unknown>".into()),
            or_none(s.primary_node.clone()),
            or_none(s.vcpus.map(|v| v.to_string())),
            or_none(s.memory_mib.map(mib)),
            list_or_none(&s.ips),
        ];
        if wide {
            row.extend([
                vm.instance_name().to_string(),
                or_none(s.disk_mib.map(mib)),
                or_none(s.os.clone()),
                or_none(s.owner.as_ref().map(|o| format!("{}:{}", o.kind, o.name))),
                list_or_none(&s.secondary_nodes),
                or_none(vm.spec.run_strategy.clone()),
            ]);
        }
        rows.push(row);
    }
    aligned(rows)
}

/// Rows (the first is the header) as kubectl prints tables: columns padded to their
/// widest cell, three spaces apart.
pub fn aligned(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn or_none(value: Option<String>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or_else(|| "<none>".into())
}

fn list_or_none(values: &[String]) -> String {
    or_none(Some(values.join(",")))
}

/// MiB as a quantity: `512Mi`, `2Gi`, `1536Mi`.
pub fn mib(value: u64) -> String {
    if value > 0 && value.is_multiple_of(1024 * 1024) {
        format!("{}Ti", value / (1024 * 1024))
    } else if value > 0 && value.is_multiple_of(1024) {
        format!("{}Gi", value / 1024)
    } else {
        format!("{value}Mi")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, state: &str, ips: &[&str]) -> GanetiInstance {
        let mut vm = GanetiInstance::default();
        vm.metadata.name = Some(format!("lab.{name}"));
        vm.spec.cluster = "lab".into();
        vm.status.instance_name = name.into();
        vm.status.state = Some(state.into());
        vm.status.primary_node = Some("node1".into());
        vm.status.vcpus = Some(2);
        vm.status.memory_mib = Some(2048);
        vm.status.ips = ips.iter().map(|s| s.to_string()).collect();
        vm
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let vms = [
            vm("vm1.example.org", "running", &["192.0.2.5"]),
            vm("db", "ADMIN_down", &[]),
        ];
        assert_eq!(
            table(&vms, false),
            "NAME                  CLUSTER   STATE        NODE    VCPUS   MEMORY   IPS\n\
             lab.vm1.example.org   lab       running      node1   2       2Gi      192.0.2.5\n\
             lab.db                lab       ADMIN_down   node1   2       2Gi      <none>\n"
        );
    }

    #[test]
    fn wide_adds_the_instance_owner_and_disks() {
        let mut one = vm("vm1", "running", &["192.0.2.5", "2001:db8::5"]);
        one.status.disk_mib = Some(20 * 1024);
        one.status.owner = Some(super::super::instance::Owner {
            kind: "Group".into(),
            name: "team-a".into(),
        });
        let out = table(&[one], true);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].ends_with("INSTANCE   DISK   OS       OWNER          SECONDARY   RUN"));
        assert!(lines[1].contains("192.0.2.5,2001:db8::5"), "{out}");
        assert!(lines[1].contains("vm1        20Gi   <none>   Group:team-a   <none>      <none>"));
    }

    #[test]
    fn sizes_read_as_quantities() {
        assert_eq!(
            [0, 512, 1024, 1536, 4096, 1024 * 1024].map(mib),
            ["0Mi", "512Mi", "1Gi", "1536Mi", "4Gi", "1Ti"]
        );
    }

    #[test]
    fn the_list_request_carries_the_selectors() {
        assert_eq!(list_path(None, None), INSTANCES);
        assert_eq!(
            list_path(Some("lab"), Some("compute.ganeti.dev/owner-user=alice")),
            format!(
                "{INSTANCES}?fieldSelector=spec.cluster%3Dlab&labelSelector=compute.ganeti.dev%2Fowner-user%3Dalice"
            )
        );
    }
}
