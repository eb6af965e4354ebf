//! Properties of the quota core: the algebra that must hold whatever the inputs.

use ganeti_operator::api::application::{
    DiskRequest, InstanceApplication, InstanceApplicationSpec, InstanceApplicationStatus, Phase,
};
use ganeti_operator::api::common::Subject;
use ganeti_operator::api::quantity::Bytes;
use ganeti_operator::inventory::Instance;
use ganeti_operator::quota::{
    EffectiveLimits, Limit, LimitKind, Request, Source, Usage, check, usage, usage_by_subject,
};
use proptest::prelude::*;

fn subjects() -> [Subject; 3] {
    [
        Subject::user("alice"),
        Subject::user("bob"),
        Subject::group("team-a"),
    ]
}

/// (vcpus, memory MiB, disk MiB, running, owner index; 3 = nobody)
type InstanceSeed = (u32, u64, u64, bool, usize);

fn instance(i: usize, (vcpus, memory_mib, disk_mib, running, _): InstanceSeed) -> Instance {
    Instance {
        name: format!("vm{i}.example.org"),
        running,
        admin_up: running,
        vcpus,
        memory_mib,
        disk_mib,
        ..Default::default()
    }
}

fn owner(seeds: &[InstanceSeed]) -> impl Fn(&Instance) -> Option<Subject> + use<'_> {
    move |inst: &Instance| {
        let i: usize = inst
            .name
            .trim_start_matches("vm")
            .split('.')
            .next()?
            .parse()
            .ok()?;
        subjects().get(seeds.get(i)?.4).cloned()
    }
}

fn application(j: usize, owner: usize, phase: Phase, memory_mib: u64) -> InstanceApplication {
    let mut a = InstanceApplication::new(
        &format!("app{j}"),
        InstanceApplicationSpec {
            mode: ganeti_operator::api::application::Mode::Create,
            instance: None,
            cluster: Some("production".into()),
            hostname: format!("app{j}.example.org"),
            vcpus: 1 + j as u32 % 4,
            memory: format!("{memory_mib}Mi"),
            disks: vec![DiskRequest { size: "10Gi".into() }],
            os: None,
            network: None,
            ssh_keys: vec![],
            owner: subjects()[owner % 3].clone(),
            applicant: None,
            contact: None,
            purpose: "property tests".into(),
            decision: None,
        },
    );
    a.metadata.namespace = Some("default".into());
    a.status = Some(InstanceApplicationStatus {
        phase,
        ..Default::default()
    });
    a
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Pending),
        Just(Phase::Approved),
        Just(Phase::Creating),
        Just(Phase::Created),
        Just(Phase::Rejected),
        Just(Phase::Failed),
    ]
}

fn limit(value: u64) -> Limit {
    Limit {
        value,
        source: Source {
            quota: "q".into(),
            is_override: false,
        },
    }
}

fn limits(values: [Option<u64>; 4]) -> EffectiveLimits {
    let [instances, vcpus, memory, disk] = values.map(|v| v.map(limit));
    EffectiveLimits {
        instances,
        vcpus,
        memory,
        disk,
        ..EffectiveLimits::unlimited("production", Subject::user("alice"))
    }
}

fn at_least(a: &Usage, b: &Usage) -> bool {
    LimitKind::ALL.iter().all(|&k| a.get(k) >= b.get(k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// More instances never lower anyone's usage, running or not, owned or not.
    #[test]
    fn usage_is_monotone_in_instances(
        seeds in prop::collection::vec((0u32..64, 0u64..1 << 20, 0u64..1 << 24, any::<bool>(), 0usize..4), 0..24),
        apps in prop::collection::vec((0usize..3, phase(), 1u64..1 << 16), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let instances: Vec<Instance> = seeds.iter().enumerate().map(|(i, s)| instance(i, *s)).collect();
        let apps: Vec<InstanceApplication> =
            apps.iter().enumerate().map(|(j, (o, p, m))| application(j, *o, *p, *m)).collect();
        let cut = if instances.is_empty() { 0 } else { cut.index(instances.len() + 1) };
        for subject in subjects() {
            let fewer = usage("production", &subject, &instances[..cut], &apps, owner(&seeds));
            let more = usage("production", &subject, &instances, &apps, owner(&seeds));
            prop_assert!(at_least(&more, &fewer), "{subject}: {fewer:?} then {more:?}");
            prop_assert!(more.pending_instances == fewer.pending_instances);
        }
        // Every owned instance is counted exactly once, for exactly one subject.
        let all = usage_by_subject("production", &instances, &apps, owner(&seeds));
        let counted: u64 = all.values().map(|u| u.instances - u.pending_instances).sum();
        prop_assert_eq!(counted, seeds.iter().filter(|s| s.4 < 3).count() as u64);
    }

    /// Asking for less than something that fits also fits. Limits are built as
    /// used + asked + slack, so every case fits (no rejected cases).
    #[test]
    fn less_than_a_fitting_request_fits(
        slack in prop::array::uniform4(prop::option::of(0u64..50)),
        used in prop::array::uniform4(0u64..1 << 40),
        asked in prop::array::uniform3(0u64..1 << 40),
        less in prop::array::uniform3(any::<u64>()),
    ) {
        let wanted = [1, asked[0], asked[1], asked[2]];
        let lim: [Option<u64>; 4] = std::array::from_fn(|i| slack[i].map(|s| used[i] + wanted[i] + s));
        let limits = limits(lim);
        let used = Usage {
            instances: used[0],
            vcpus: used[1],
            memory: Bytes(used[2]),
            disk: Bytes(used[3]),
            ..Default::default()
        };
        let request = Request { vcpus: asked[0], memory: Bytes(asked[1]), disk: Bytes(asked[2]) };
        let verdict = check(&limits, &used, &request);
        prop_assert!(verdict.fits && verdict.exceeded.is_empty(), "{}", verdict.message);
        let smaller = Request {
            vcpus: asked[0].saturating_sub(less[0]),
            memory: Bytes(asked[1].saturating_sub(less[1])),
            disk: Bytes(asked[2].saturating_sub(less[2])),
        };
        let verdict = check(&limits, &used, &smaller);
        prop_assert!(verdict.fits, "{}", verdict.message);
    }

    /// Without limits everything fits, however much is used or asked.
    #[test]
    fn unlimited_always_fits(
        used in prop::array::uniform5(any::<u64>()),
        asked in (any::<u64>(), any::<u64>(), any::<u64>()),
    ) {
        let used = Usage {
            instances: used[0],
            vcpus: used[1],
            memory: Bytes(used[2]),
            disk: Bytes(used[3]),
            pending_instances: used[4],
            uncountable: vec!["default/broken".into()],
        };
        let request = Request { vcpus: asked.0, memory: Bytes(asked.1), disk: Bytes(asked.2) };
        let verdict = check(&limits([None; 4]), &used, &request);
        prop_assert!(verdict.fits, "{}", verdict.message);
        prop_assert!(verdict.exceeded.is_empty());
    }

    /// The verdict is exactly "every limit holds used + requested".
    #[test]
    fn fits_iff_every_limit_holds(
        lim in prop::array::uniform4(prop::option::of(0u64..50)),
        used in prop::array::uniform4(0u64..30),
        asked in (0u64..30, 0u64..30, 0u64..30),
    ) {
        let limits = limits(lim);
        let used = Usage {
            instances: used[0],
            vcpus: used[1],
            memory: Bytes(used[2]),
            disk: Bytes(used[3]),
            ..Default::default()
        };
        let request = Request { vcpus: asked.0, memory: Bytes(asked.1), disk: Bytes(asked.2) };
        let wanted = [1, asked.0, asked.1, asked.2];
        let expected = LimitKind::ALL
            .iter()
            .zip(wanted)
            .all(|(&k, r)| limits.get(k).is_none_or(|l| used.get(k) + r <= l.value));
        prop_assert_eq!(check(&limits, &used, &request).fits, expected);
    }
}
