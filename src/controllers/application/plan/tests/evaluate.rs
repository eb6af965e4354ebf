use super::*;

#[test]
fn without_a_decision_it_waits_for_an_admin() {
    let w = World::new();
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], false);
    assert_eq!(e.status.phase, Phase::Pending);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "AwaitingDecision");
    assert_eq!(condition(&e, VALIDATED).status, "True");
    assert_eq!(condition(&e, QUOTA_EXCEEDED).status, "False");
    assert_eq!(e.status.cluster.as_deref(), Some("lab"));
    assert_eq!(e.status.observed_generation, Some(1));
}

#[test]
fn an_admin_approval_within_quota_approves() {
    let mut w = World::new();
    w.quotas = vec![quota(2)];
    let e = w.evaluate(&approve(app("a", Subject::user("alice"))), &[], false);
    assert!(e.approved);
    assert_eq!(e.status.phase, Phase::Approved);
    let decided = condition(&e, DECIDED);
    assert_eq!(
        (decided.status.as_str(), decided.reason.as_str()),
        ("True", "Approved")
    );
    assert!(decided.message.contains("admin"), "{}", decided.message);
    assert!(e.status.quota.as_ref().unwrap().fits);
}

#[test]
fn an_approval_over_quota_is_refused_with_the_numbers() {
    let mut w = World::new();
    w.quotas = vec![quota(2)];
    w.inventory = inventory(vec![
        owned("one.example.org", &Subject::group("team-a")),
        owned("two.example.org", &Subject::group("team-a")),
    ]);
    let e = w.evaluate(&approve(app("a", Subject::group("team-a"))), &[], false);
    assert!(!e.approved);
    assert_eq!(e.status.phase, Phase::Pending);
    let q = condition(&e, QUOTA_EXCEEDED);
    assert_eq!(q.status, "True");
    assert!(q.message.contains("3 of 2"), "{}", q.message);
    let d = condition(&e, DECIDED);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("False", "ApprovalRefused")
    );
    assert!(d.message.contains("3 of 2"), "{}", d.message);
    assert!(
        e.note
            .as_ref()
            .is_some_and(|n| n.warning && n.reason == "ApprovalRefused")
    );
    // Said once: the same refusal again is no new Event.
    let mut again = approve(app("a", Subject::group("team-a")));
    again.status = Some(e.status.clone());
    assert_eq!(w.evaluate(&again, &[], false).note, None);
}

#[test]
fn approved_but_not_created_applications_count_against_the_quota() {
    let mut w = World::new();
    w.quotas = vec![quota(1)];
    let mut first = app("first", Subject::user("alice"));
    first.status = Some(InstanceApplicationStatus {
        phase: Phase::Creating,
        cluster: Some("lab".into()),
        ..Default::default()
    });
    let second = approve(app("second", Subject::user("alice")));
    let e = w.evaluate(&second, &[first.clone(), second.clone()], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, QUOTA_EXCEEDED).status, "True");
}

#[test]
fn a_rejection_rejects() {
    let w = World::new();
    let mut a = app("a", Subject::user("alice"));
    a.spec.decision = Some(Decision {
        verdict: Verdict::Rejected,
        reason: Some("no budget".into()),
        decided_by: Some("admin".into()),
    });
    let e = w.evaluate(&a, &[], false);
    assert_eq!(e.status.phase, Phase::Rejected);
    assert!(condition(&e, DECIDED).message.contains("no budget"));
}

#[test]
fn holders_of_create_vm_are_approved_within_quota_only() {
    let mut w = World::new();
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], true);
    assert!(e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "AutoApproved");
    w.quotas = vec![quota(0)];
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], true);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "AwaitingDecision");
}

#[test]
fn validation_names_what_to_fix() {
    let mut w = World::new();
    w.inventory = inventory(vec![owned("a.example.org", &Subject::user("bob"))]);
    let e = w.evaluate(&approve(app("a", Subject::user("alice"))), &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, VALIDATED).reason, "NameTaken");
    assert_eq!(condition(&e, DECIDED).reason, "ApprovalWaiting");

    let w = World::new();
    let mut a = app("a", Subject::user("alice"));
    a.spec.os = Some("windows".into());
    let v = w.evaluate(&a, &[], false);
    assert_eq!(condition(&v, VALIDATED).reason, "OperatingSystemNotOffered");
    assert!(condition(&v, VALIDATED).message.contains("noop"));
    // A bare name stands for the OS's default variant.
    a.spec.os = Some("debootstrap".into());
    assert_eq!(condition(&w.evaluate(&a, &[], false), VALIDATED).status, "True");

    let mut w = World::new();
    w.spec.defaults.disk_template = Some(DiskTemplate::Drbd);
    let e = w.evaluate(&app("a", Subject::user("alice")), &[], false);
    assert_eq!(condition(&e, VALIDATED).reason, "DiskTemplateNotAllowed");
}

#[test]
fn cluster_problems_keep_it_pending() {
    let a = approve(app("a", Subject::user("alice")));
    for (view, reason) in [
        (ClusterView::Unchosen, "NoCluster"),
        (ClusterView::Missing("lab"), "ClusterNotFound"),
        (
            ClusterView::NotReady {
                name: "lab",
                message: "wrong password",
            },
            "ClusterNotReady",
        ),
    ] {
        let e = evaluate(&Pending {
            app: &a,
            cluster: view,
            quotas: &[],
            applications: &[],
            may_self_approve: true,
            now: now(),
        });
        assert!(!e.approved, "{reason}");
        assert_eq!(e.status.phase, Phase::Pending);
        assert_eq!(condition(&e, VALIDATED).reason, reason);
        assert!(conditions::get(&e.status.conditions, QUOTA_EXCEEDED).is_none());
    }
}

#[test]
fn only_waiting_or_edited_applications_are_evaluated() {
    let mut a = app("a", Subject::user("alice"));
    assert!(needs_evaluation(&a));
    for (phase, same_generation, expected) in [
        (Phase::Pending, true, true),
        (Phase::Failed, true, false),
        (Phase::Failed, false, true),
        (Phase::Rejected, false, true),
        (Phase::Approved, false, false),
        (Phase::Creating, false, false),
        (Phase::Created, false, false),
    ] {
        a.status = Some(InstanceApplicationStatus {
            phase,
            observed_generation: Some(if same_generation { 1 } else { 0 }),
            ..Default::default()
        });
        assert_eq!(needs_evaluation(&a), expected, "{phase:?} same={same_generation}");
    }
}

#[test]
fn an_edited_failed_application_starts_afresh_on_a_new_decision() {
    let w = World::new();
    let mut a = approve(app("a", Subject::user("alice")));
    a.status = Some(w.evaluate(&a, &[], false).status);
    a.status = Some(failed_locally(&a, "OpPrereqError", "out of memory".into(), now()));
    a.status.as_mut().unwrap().job_id = Some(7);
    // Edited: the old approval does not carry over to the new spec.
    a.metadata.generation = Some(2);
    a.spec.vcpus = 8;
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "ChangedAfterApproval");
    assert_eq!(e.status.job_id, None);
    // An admin decides again (a new reason): now it is tried afresh.
    a.status = Some(e.status);
    a.metadata.generation = Some(3);
    a.spec.decision.as_mut().unwrap().reason = Some("8 vCPUs are fine".into());
    let e = w.evaluate(&a, &[], false);
    assert!(e.approved);
    assert_eq!(e.status.approved_generation, Some(3));
    assert_eq!(e.status.job_id, None);
    assert_eq!(e.status.ganeti_error, None);
    assert_eq!(e.status.observed_generation, Some(3));
    assert!(conditions::get(&e.status.conditions, INSTANCE_CREATED).is_none());
}

#[test]
fn an_approval_covers_only_the_spec_it_was_given_for() {
    let taken = owned("small.example.org", &Subject::user("bob"));
    let mut w = World::new();
    w.inventory = inventory(vec![taken]);
    // alice asks for a small VM under a taken name; an admin approves; it waits.
    let mut a = app("small", Subject::user("alice"));
    a.spec.vcpus = 1;
    a.status = Some(w.evaluate(&a, &[], false).status);
    a = approve(a);
    a.metadata.generation = Some(2);
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, DECIDED).reason, "ApprovalWaiting");
    assert_eq!(e.status.decided.as_ref().unwrap().generation, 2);
    // Evaluated again on the same spec: still the same decision, still waiting.
    a.status = Some(e.status);
    let e = w.evaluate(&a, &[], false);
    assert_eq!(e.status.decided.as_ref().unwrap().generation, 2);
    // alice frees the name and asks for 8 vCPUs: the approval does not carry over.
    a.status = Some(e.status);
    a.metadata.generation = Some(3);
    a.spec.hostname = "big.example.org".into();
    a.spec.vcpus = 8;
    let e = w.evaluate(&a, &[], false);
    assert!(!e.approved);
    assert_eq!(e.status.phase, Phase::Pending);
    assert_eq!(e.status.approved_generation, None);
    let d = condition(&e, DECIDED);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("False", "ChangedAfterApproval")
    );
    assert!(d.message.contains("approved generation 2") && d.message.contains("decide again"));
    assert!(e.note.as_ref().is_some_and(|n| n.warning));
    // A holder of clusters.createVm may approve the new spec themselves, within quota.
    let self_approved = w.evaluate(&a, &[], true);
    assert!(self_approved.approved);
    assert_eq!(condition(&self_approved, DECIDED).reason, "AutoApproved");
    // An admin's new decision approves it, for this generation.
    a.status = Some(e.status);
    a.metadata.generation = Some(4);
    a.spec.decision.as_mut().unwrap().reason = Some("8 vCPUs are fine".into());
    let e = w.evaluate(&a, &[], false);
    assert!(e.approved);
    assert_eq!(e.status.approved_generation, Some(4));
    assert_eq!(e.status.instance_name.as_deref(), Some("big.example.org"));
}

#[test]
fn a_rejection_stands_over_an_edit() {
    let w = World::new();
    let mut a = app("a", Subject::user("alice"));
    a.spec.decision = Some(Decision {
        verdict: Verdict::Rejected,
        reason: Some("too big".into()),
        decided_by: Some("admin".into()),
    });
    a.status = Some(w.evaluate(&a, &[], true).status);
    a.metadata.generation = Some(2);
    a.spec.vcpus = 1;
    let e = w.evaluate(&a, &[], true);
    assert!(!e.approved);
    assert_eq!(e.status.phase, Phase::Rejected);
}

#[test]
fn reserved_groups_cannot_own_a_vm() {
    let w = World::new();
    let a = approve(app("a", Subject::group("system:authenticated")));
    let e = w.evaluate(&a, &[], true);
    assert!(!e.approved);
    let v = condition(&e, VALIDATED);
    assert_eq!(v.reason, "ReservedGroup");
    assert!(v.message.contains("system:authenticated"));
}

#[test]
fn a_vm_created_after_the_inventory_was_read_still_counts() {
    let mut w = World::new();
    w.quotas = vec![quota(1)];
    w.inventory.read_started = Some(now());
    let created_at = |t: &str| {
        let mut a = app("first", Subject::user("alice"));
        a.status = Some(InstanceApplicationStatus {
            phase: Phase::Created,
            cluster: Some("lab".into()),
            instance_name: Some("first.example.org".into()),
            created_time: Some(Time(t.parse().unwrap())),
            ..Default::default()
        });
        a
    };
    let second = approve(app("second", Subject::user("alice")));
    // Created after the read began: the snapshot may lack it, it counts.
    let after = created_at("2026-11-24T12:00:01Z");
    let e = w.evaluate(&second, &[after, second.clone()], false);
    assert!(!e.approved);
    assert_eq!(condition(&e, QUOTA_EXCEEDED).status, "True");
    // Created before the read began and absent from it: removed since, holds nothing.
    let before = created_at("2026-11-24T11:59:59Z");
    let e = w.evaluate(&second, &[before, second.clone()], false);
    assert!(e.approved);
}
