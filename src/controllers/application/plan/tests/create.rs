use super::*;

#[test]
fn the_create_request_carries_defaults_owner_tag_and_keys() {
    let mut a = app("a", Subject::user("alice"));
    a.spec.memory = "1536Mi".into();
    a.spec.disks = vec![
        DiskRequest { size: "10Gi".into() },
        DiskRequest { size: "1G".into() },
    ];
    let profile = |user: &str, keys: &[&str], groups: &[&str]| {
        UserProfile::new(
            user,
            UserProfileSpec {
                username: user.into(),
                full_name: None,
                email: format!("{user}@example.org"),
                ssh_keys: keys.iter().map(|k| k.to_string()).collect(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        )
    };
    let profiles = [
        profile("alice", &[KEY_A, KEY_B], &[]),
        profile("bob", &["ssh-rsa BOB"], &[]),
    ];
    let req = create_request(&a, &spec(), &catalog(), "GANETI_WEB_MANAGER", &profiles).unwrap();
    let body = serde_json::to_value(&req).unwrap();
    assert_eq!(body["__version__"], 1);
    assert_eq!(body["instance_name"], "a.example.org");
    assert_eq!(body["disk_template"], "plain");
    assert_eq!(body["disks"], serde_json::json!([{"size": 10240}, {"size": 954}]));
    assert_eq!(
        body["beparams"],
        serde_json::json!({"vcpus": 2, "maxmem": 1536, "minmem": 1536})
    );
    assert_eq!(
        body["nics"],
        serde_json::json!([{"mode": "routed", "link": "rt"}])
    );
    assert_eq!(body["os_type"], "noop");
    assert_eq!(body["hypervisor"], "fake");
    assert_eq!(body["start"], true);
    assert_eq!(body["pnode"], "node1");
    assert_eq!(
        body["tags"],
        serde_json::json!(["GANETI_WEB_MANAGER:owner:U:alice", "GANETI_WEB_MANAGER:app:uid-a"])
    );
    // The application's key once, then the profile's other key; not bob's.
    assert_eq!(
        body["osparams"]["ssh_authorized_keys"],
        format!("{KEY_A}\n{KEY_B}")
    );

    // A Ganeti network brings its own mode and link; diskless has no disks.
    let mut s = spec();
    s.defaults.disk_template = Some(DiskTemplate::Diskless);
    a.spec.network = Some(NetworkRequest {
        name: Some("vlan42".into()),
        ip: Some("pool".into()),
        ..Default::default()
    });
    let body = serde_json::to_value(create_request(&a, &s, &catalog(), "P", &[]).unwrap()).unwrap();
    assert_eq!(body["disks"], serde_json::json!([]));
    assert_eq!(
        body["nics"],
        serde_json::json!([{"network": "vlan42", "ip": "pool"}])
    );

    // A group's VM gets every member's keys.
    let g = app("g", Subject::group("team-a"));
    let members = [
        profile("carol", &[KEY_B], &["team-a"]),
        profile("dave", &[KEY_A], &["team-b"]),
    ];
    assert_eq!(ssh_keys(&g, &members), vec![KEY_A.to_string(), KEY_B.to_string()]);
}

#[test]
fn an_instance_is_ours_only_with_the_marker_and_the_owner_tag() {
    let p = crate::tags::DEFAULT_PREFIX;
    let a = app("a", Subject::user("alice"));
    assert_eq!(marker_tag(&a, p).unwrap(), "GANETI_WEB_MANAGER:app:uid-a");
    assert!(is_ours(&a, &made_by(&a, "renamed.example.org", "u-1"), p));
    // The owner's tag alone (any VM of alice's) is not enough, nor the marker alone.
    assert!(!is_ours(&a, &owned("a.example.org", &Subject::user("alice")), p));
    let mut marker_only = made_by(&a, "a.example.org", "u-1");
    marker_only.tags.retain(|t| t.contains(":app:"));
    assert!(!is_ours(&a, &marker_only, p));
    // Another application of the same owner has another marker.
    let other = app("other", Subject::user("alice"));
    assert!(!is_ours(&other, &made_by(&a, "a.example.org", "u-1"), p));
    assert!(!is_ours(&a, &made_by(&a, "a.example.org", "u-1"), "OTHER"));
    // Without a UID (never so in the API server) nothing is ours, and nothing is sent.
    let mut no_uid = app("a", Subject::user("alice"));
    no_uid.metadata.uid = None;
    assert!(!is_ours(&no_uid, &made_by(&a, "a.example.org", "u-1"), p));
    assert!(create_request(&no_uid, &spec(), &catalog(), p, &[]).is_err());
}

#[test]
fn the_reason_names_application_applicant_and_approver() {
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    assert_eq!(
        create_reason(&a),
        "ganeti-operator: InstanceApplication team/a of alice, approved by admin"
    );
}
