use super::super::status::created;
use super::*;

#[test]
fn the_vm_is_created_from_the_approved_generation_only() {
    let w = World::new();
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(w.evaluate(&a, &[], false).status);
    assert_eq!(a.status.as_ref().unwrap().approved_generation, Some(1));
    assert!(spec_is_approved(&a));
    // Changed between the approval and the create call.
    a.metadata.generation = Some(2);
    a.spec.hostname = "elsewhere.example.org".into();
    assert!(!spec_is_approved(&a));
    assert_eq!(approved_name(&a), "a.example.org");
    let s = changed_after_approval(&a, now());
    assert_eq!((s.phase, s.approved_generation), (Phase::Pending, None));
    assert_eq!(
        conditions::get(&s.conditions, DECIDED).unwrap().reason,
        "ChangedAfterApproval"
    );
    // Back in Pending the admin's approval is stale: it waits for a new decision.
    a.status = Some(s);
    assert!(needs_evaluation(&a));
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "ChangedAfterApproval");
    // Submitted before the change: the status keeps the approved name, not the spec's.
    let mut b = approve(app("b", Subject::user("alice")));
    b.status = Some(w.evaluate(&b, &[], false).status);
    b.spec.hostname = "bobdb.example.org".into();
    b.metadata.generation = Some(2);
    let s = submitted(&b, 5, false, now());
    assert_eq!(s.instance_name.as_deref(), Some("b.example.org"));
}

#[test]
fn transitions_record_job_node_and_errors() {
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    let s = submitted(&a, 42, false, now());
    assert_eq!((s.phase, s.job_id), (Phase::Creating, Some(42)));
    assert_eq!(s.observed_generation, Some(1));
    a.status = Some(s);
    let instance = Instance {
        name: "a.example.org".into(),
        primary_node: "node1".into(),
        ips: vec!["198.51.100.50".into()],
        ctime: Some(1_795_541_331.5),
        ..Default::default()
    };
    let s = created(&a, &instance, now());
    assert_eq!(s.phase, Phase::Created);
    assert_eq!(s.primary_node.as_deref(), Some("node1"));
    assert_eq!(s.ips, vec!["198.51.100.50".to_string()]);
    assert_eq!(s.created_time.as_ref().unwrap().0.as_second(), 1_795_541_331);
    assert_eq!(
        conditions::get(&s.conditions, INSTANCE_CREATED).unwrap().status,
        "True"
    );

    let failure = GanetiFailure::from_opresult(&serde_json::json!([
        "OpPrereqError",
        ["Not enough memory on node1", "insufficient_resources"]
    ]))
    .unwrap();
    let s = failed(&a, &failure, now());
    assert_eq!(s.phase, Phase::Failed);
    let e = s.ganeti_error.unwrap();
    assert_eq!(e.message, "Not enough memory on node1");
    assert_eq!(e.code.as_deref(), Some("insufficient_resources"));
}

#[test]
fn the_applicant_is_mailed_once_per_phase_and_generation() {
    let mut a = approve(app("a", Subject::user("alice")));
    assert_eq!(mail_due(&a), None);
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    assert_eq!(mail_due(&a), Some(MailKind::Approved));
    a.status = Some(notified(&a, MailKind::Approved, true, "mailed".into(), now()));
    assert_eq!(mail_due(&a), None);
    a.status = Some(submitted(&a, 1, false, now()));
    assert_eq!(mail_due(&a), None, "Creating is still approved to the applicant");
    a.status = Some(failed_locally(&a, "X", "broken".into(), now()));
    assert_eq!(mail_due(&a), Some(MailKind::Failed));
    let (subject, body) = mail_text(&a, MailKind::Failed);
    assert!(subject.contains("a.example.org"));
    assert!(body.contains("broken") && body.contains("File a new application"));
    a.status = Some(notified(&a, MailKind::Failed, false, "no address".into(), now()));
    assert_eq!(mail_due(&a), None, "an impossible mail is not retried");
    // Edited and approved again: a new generation, a new approval mail.
    a.metadata.generation = Some(2);
    a.spec.decision.as_mut().unwrap().reason = Some("again".into());
    a.status = Some(World::new().evaluate(&a, &[], false).status);
    assert_eq!(mail_due(&a), Some(MailKind::Approved));
}
