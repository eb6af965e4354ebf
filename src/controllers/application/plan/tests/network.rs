use super::super::validate::cidr_contains;
use super::*;

fn with_network(name: &str, network: NetworkRequest) -> InstanceApplication {
    let mut a = app(name, Subject::user("alice"));
    a.spec.network = Some(network);
    a
}

#[test]
fn applications_choose_only_the_networks_the_cluster_offers() {
    let mut w = World::new();
    let refused = |w: &World, a: &InstanceApplication| {
        let e = w.evaluate(a, &[], true);
        assert!(!e.approved, "{:?}", a.spec.network);
        let v = condition(&e, VALIDATED);
        (v.reason.clone(), v.message.clone())
    };
    // Defaults only: the default mode and link may be named, nothing else.
    let default_named = with_network(
        "d",
        NetworkRequest {
            mode: Some(NicMode::Routed),
            link: Some("rt".into()),
            ..Default::default()
        },
    );
    assert!(w.evaluate(&default_named, &[], true).approved);
    let (reason, message) = refused(
        &w,
        &with_network(
            "v",
            NetworkRequest {
                name: Some("dmz".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "NetworkNotAllowed");
    assert!(message.contains("allowed networks: none"), "{message}");
    let (reason, message) = refused(
        &w,
        &with_network(
            "l",
            NetworkRequest {
                link: Some("br-dmz".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "NicLinkNotAllowed");
    assert!(message.contains("allowed links: rt"), "{message}");
    let (reason, message) = refused(
        &w,
        &with_network(
            "m",
            NetworkRequest {
                mode: Some(NicMode::Bridged),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "NicModeNotAllowed");
    assert!(message.contains("allowed modes: routed"), "{message}");
    // An explicit IP without a Ganeti network needs an offered range; `pool` a network.
    let (reason, message) = refused(
        &w,
        &with_network(
            "i",
            NetworkRequest {
                ip: Some("198.51.100.7".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpNotAllowed");
    assert!(message.contains("allowed ranges: none"), "{message}");
    let (reason, _) = refused(
        &w,
        &with_network(
            "p",
            NetworkRequest {
                ip: Some("pool".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpNotAllowed");

    // The cluster offers more.
    w.spec.allowed = Some(crate::api::cluster::AllowedChoices {
        networks: vec!["dmz".into()],
        nic_modes: vec![NicMode::Bridged],
        nic_links: vec!["br-dmz".into()],
        ip_ranges: vec!["198.51.100.0/25".into()],
    });
    for ok in [
        NetworkRequest {
            name: Some("dmz".into()),
            ip: Some("pool".into()),
            ..Default::default()
        },
        NetworkRequest {
            name: Some("dmz".into()),
            ip: Some("203.0.113.9".into()),
            ..Default::default()
        },
        NetworkRequest {
            mode: Some(NicMode::Bridged),
            link: Some("br-dmz".into()),
            ..Default::default()
        },
        NetworkRequest {
            ip: Some("198.51.100.127".into()),
            ..Default::default()
        },
    ] {
        assert!(
            w.evaluate(&with_network("ok", ok.clone()), &[], true).approved,
            "{ok:?}"
        );
    }
    let (reason, message) = refused(
        &w,
        &with_network(
            "i",
            NetworkRequest {
                ip: Some("198.51.100.128".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpNotAllowed");
    assert!(
        message.contains("198.51.100.0/25") && message.contains("dmz"),
        "{message}"
    );
    let (_, message) = refused(
        &w,
        &with_network(
            "n",
            NetworkRequest {
                name: Some("core".into()),
                ..Default::default()
            },
        ),
    );
    assert!(message.contains("allowed networks: dmz"), "{message}");

    // An offered address someone holds: a VM Ganeti has, or an approved application.
    let mut holder = owned("web.example.org", &Subject::user("bob"));
    holder.ips = vec!["198.51.100.10".into()];
    w.inventory = inventory(vec![holder]);
    let (reason, message) = refused(
        &w,
        &with_network(
            "i",
            NetworkRequest {
                ip: Some("198.51.100.10".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(reason, "IpTaken");
    assert!(message.contains("web.example.org"), "{message}");
    let mut approved = with_network(
        "first",
        NetworkRequest {
            ip: Some("198.51.100.11".into()),
            ..Default::default()
        },
    );
    approved.status = Some(InstanceApplicationStatus {
        phase: Phase::Approved,
        cluster: Some("lab".into()),
        ..Default::default()
    });
    let second = with_network(
        "second",
        NetworkRequest {
            ip: Some("198.51.100.11".into()),
            ..Default::default()
        },
    );
    let e = w.evaluate(&second, std::slice::from_ref(&approved), true);
    assert!(!e.approved);
    assert!(condition(&e, VALIDATED).message.contains("team/first"));
    // Its own earlier approval does not count against it.
    assert!(
        w.evaluate(&approved, std::slice::from_ref(&approved), true)
            .approved
    );
}

#[test]
fn cidr_ranges() {
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    assert!(cidr_contains("10.0.0.0/8", ip("10.255.1.2")));
    assert!(!cidr_contains("10.0.0.0/8", ip("11.0.0.1")));
    assert!(cidr_contains("0.0.0.0/0", ip("1.2.3.4")));
    assert!(cidr_contains("192.0.2.7/32", ip("192.0.2.7")));
    assert!(!cidr_contains("192.0.2.7/32", ip("192.0.2.8")));
    assert!(!cidr_contains("192.0.2.0/33", ip("192.0.2.1")));
    assert!(!cidr_contains("192.0.2.0", ip("192.0.2.0")));
}
