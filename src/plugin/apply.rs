//! `apply-for`, `approve` and `reject`: InstanceApplications (`ganeti.dev/v1alpha1`).

use super::cli::{ApplyArgs, DryRun};
use super::client::{About, explain};
use crate::api::application::{Decision, DiskRequest, Mode, Verdict};
use crate::api::quantity::parse_bytes;
use crate::api::{InstanceApplication, InstanceApplicationSpec, Subject};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The field manager of the plugin's writes.
const FIELD_MANAGER: &str = "kubectl-ganeti";

/// The application the flags describe, owned by `owner`. Sizes are checked here so a typo
/// is told before anything is sent; the API server checks the rest.
pub fn build(args: &ApplyArgs, owner: Subject) -> Result<InstanceApplication, String> {
    let mut spec = InstanceApplicationSpec {
        mode: Mode::Create,
        instance: None,
        cluster: args.cluster.clone(),
        hostname: String::new(),
        vcpus: 0,
        memory: String::new(),
        disks: Vec::new(),
        os: args.os.clone(),
        network: None,
        ssh_keys: Vec::new(),
        owner,
        applicant: None,
        contact: None,
        purpose: args.purpose.clone(),
        decision: None,
    };
    let name_from = match &args.adopt {
        Some(instance) => {
            spec.mode = Mode::Adopt;
            spec.instance = Some(instance.trim().to_string());
            instance.trim()
        }
        None => {
            let memory = args.memory.as_deref().ok_or("--memory is required")?.trim();
            parse_bytes(memory).map_err(|e| format!("--memory: {e}"))?;
            for disk in &args.disks {
                let size = disk.trim();
                parse_bytes(size).map_err(|e| format!("--disk: {e}"))?;
                spec.disks.push(DiskRequest {
                    size: size.to_string(),
                });
            }
            spec.memory = memory.to_string();
            spec.vcpus = args.vcpus.ok_or("--vcpus is required")?;
            spec.hostname = args
                .hostname
                .as_deref()
                .ok_or("--hostname is required")?
                .trim()
                .to_string();
            &spec.hostname
        }
    };
    let generated = generate_name(name_from);
    let mut application = InstanceApplication::new("", spec);
    match &args.name {
        Some(name) => application.metadata.name = Some(name.clone()),
        None => {
            application.metadata.name = None;
            application.metadata.generate_name = Some(generated);
        }
    }
    Ok(application)
}

/// `web1.example.org` → `web1-`: the host name's first label as a name prefix (the API
/// server appends 5 random characters).
pub fn generate_name(hostname: &str) -> String {
    let label: String = hostname
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(52)
        .collect();
    match label.trim_matches('-') {
        "" => "vm-".to_string(),
        label => format!("{label}-"),
    }
}

/// The merge patch that decides an application. A missing reason is `null`, which drops
/// the reason of an earlier decision.
pub fn decision_patch(verdict: Verdict, reason: Option<&str>) -> serde_json::Value {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    json!({"spec": {"decision": {"verdict": verdict, "reason": reason}}})
}

/// The caller's username, as the API server authenticates it.
async fn caller(client: &Client) -> anyhow::Result<String> {
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = match reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(review) => review,
        Err(error) => return Err(explain(client, error, About::Identity).await),
    };
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the API server did not say who you are: use --owner-group"))
}

pub async fn apply_for(client: &Client, namespace: &str, args: &ApplyArgs) -> anyhow::Result<()> {
    let owner = match &args.owner_group {
        Some(group) => Subject::group(group),
        None => Subject::user(caller(client).await?),
    };
    let application = build(args, owner).map_err(anyhow::Error::msg)?;
    if args.dry_run == Some(DryRun::Client) {
        let mut shown = application;
        shown.metadata.namespace = Some(namespace.to_string());
        print!("{}", serde_yaml::to_string(&shown)?);
        return Ok(());
    }
    let params = PostParams {
        dry_run: args.dry_run == Some(DryRun::Server),
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    let applications: Api<InstanceApplication> = Api::namespaced(client.clone(), namespace);
    let created = match applications.create(&params, &application).await {
        Ok(created) => created,
        Err(error) => {
            let about = About::Application {
                namespace,
                name: args.name.as_deref(),
            };
            return Err(explain(client, error, about).await);
        }
    };
    if params.dry_run {
        print!("{}", serde_yaml::to_string(&created)?);
        return Ok(());
    }
    let name = created.metadata.name.unwrap_or_default();
    println!("{name}");
    eprintln!(
        "filed for {}; follow it with: kubectl get instanceapplication {name} -n {namespace}",
        created.spec.owner
    );
    Ok(())
}

pub async fn decide(
    client: &Client,
    namespace: &str,
    name: &str,
    verdict: Verdict,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let patch = decision_patch(verdict, reason);
    if verdict == Verdict::Rejected && patch["spec"]["decision"]["reason"].is_null() {
        anyhow::bail!("a rejection needs a reason the applicant can read (--reason)");
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let applications: Api<InstanceApplication> = Api::namespaced(client.clone(), namespace);
    let decided = match applications.patch(name, &params, &Patch::Merge(&patch)).await {
        Ok(decided) => decided,
        Err(error) => {
            let name = Some(name);
            return Err(explain(client, error, About::Application { namespace, name }).await);
        }
    };
    let by = decided
        .spec
        .decision
        .and_then(|d: Decision| d.decided_by)
        .map(|by| format!(" by {by}"))
        .unwrap_or_default();
    let word = match verdict {
        Verdict::Approved => "approved",
        Verdict::Rejected => "rejected",
    };
    println!("instanceapplication.ganeti.dev/{name} {word}{by}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SubjectKind;

    fn args() -> ApplyArgs {
        ApplyArgs {
            hostname: Some("web1.example.org".into()),
            vcpus: Some(2),
            memory: Some("2Gi".into()),
            disks: vec!["20Gi".into(), " 5Gi ".into()],
            adopt: None,
            purpose: "the team's web server".into(),
            cluster: Some("lab".into()),
            os: None,
            owner_group: None,
            name: None,
            dry_run: None,
        }
    }

    #[test]
    fn the_flags_become_the_spec() {
        let app = build(&args(), Subject::user("alice")).unwrap();
        let value = serde_json::to_value(&app).unwrap();
        assert_eq!(value["apiVersion"], "ganeti.dev/v1alpha1");
        assert_eq!(value["kind"], "InstanceApplication");
        assert_eq!(value["metadata"]["generateName"], "web1-");
        assert!(value["metadata"].get("name").is_none(), "{value}");
        assert_eq!(
            value["spec"],
            json!({
                "mode": "Create", "cluster": "lab", "hostname": "web1.example.org", "vcpus": 2, "memory": "2Gi",
                "disks": [{"size": "20Gi"}, {"size": "5Gi"}],
                "owner": {"kind": "User", "name": "alice"},
                "purpose": "the team's web server"
            })
        );
    }

    #[test]
    fn a_name_and_a_group_owner_are_taken_as_given() {
        let mut a = args();
        a.name = Some("web1-request".into());
        a.os = Some("debootstrap+bookworm".into());
        let app = build(&a, Subject::group("team-a")).unwrap();
        assert_eq!(app.metadata.name.as_deref(), Some("web1-request"));
        assert_eq!(app.metadata.generate_name, None);
        assert_eq!(app.spec.owner.kind, SubjectKind::Group);
        assert_eq!(app.spec.os.as_deref(), Some("debootstrap+bookworm"));
    }

    #[test]
    fn adopting_names_the_instance_and_no_sizes() {
        let a = ApplyArgs {
            hostname: None,
            vcpus: None,
            memory: None,
            disks: vec![],
            adopt: Some(" old-db.example.org ".into()),
            ..args()
        };
        let app = build(&a, Subject::user("alice")).unwrap();
        let value = serde_json::to_value(&app).unwrap();
        assert_eq!(value["metadata"]["generateName"], "old-db-");
        assert_eq!(
            value["spec"],
            json!({
                "mode": "Adopt", "instance": "old-db.example.org", "cluster": "lab",
                "owner": {"kind": "User", "name": "alice"},
                "purpose": "the team's web server"
            })
        );
        // Without --adopt the mode is still written: what was asked for is explicit.
        let created = serde_json::to_value(build(&args(), Subject::user("alice")).unwrap()).unwrap();
        assert_eq!(created["spec"]["mode"], "Create");
    }

    #[test]
    fn bad_sizes_are_told_before_sending() {
        let mut a = args();
        a.memory = Some("2 GB".into());
        assert!(
            build(&a, Subject::user("u"))
                .unwrap_err()
                .starts_with("--memory: ")
        );
        let mut a = args();
        a.disks.push("-1Gi".into());
        assert!(build(&a, Subject::user("u")).unwrap_err().contains("negative"));
    }

    #[test]
    fn generated_names_are_valid_prefixes() {
        assert_eq!(generate_name("web1.example.org"), "web1-");
        assert_eq!(generate_name("Web_1"), "web-1-");
        assert_eq!(generate_name("-.x"), "vm-");
        assert_eq!(generate_name(&"a".repeat(80)).len(), 53);
    }

    #[test]
    fn decision_patches() {
        assert_eq!(
            decision_patch(Verdict::Approved, None),
            json!({"spec": {"decision": {"verdict": "Approved", "reason": null}}})
        );
        assert_eq!(
            decision_patch(Verdict::Rejected, Some(" no budget ")),
            json!({"spec": {"decision": {"verdict": "Rejected", "reason": "no budget"}}})
        );
        assert_eq!(
            decision_patch(Verdict::Rejected, Some("  ")),
            json!({"spec": {"decision": {"verdict": "Rejected", "reason": null}}})
        );
    }
}
