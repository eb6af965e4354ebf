use super::*;

fn ticket() -> Ticket {
    Ticket {
        user: "alice".into(),
        groups: vec!["team-a".into()],
        cluster: "lab".into(),
        instance: "vm1".into(),
        uuid: "0c6b5a2e-0000-4000-8000-000000000001".into(),
        nonce: "n".into(),
        expires: 1000,
    }
}

fn key() -> SigningKey {
    crate::keys::Keys::for_tests(3).console_tickets
}

#[test]
fn a_ticket_opens_only_its_own_vm_until_it_expires() {
    let token = signed::sign(&key(), &ticket());
    assert_eq!(accept(&key(), &token, Some(("lab", "vm1")), 999), Ok(ticket()));
    assert_eq!(accept(&key(), &token, None, 999), Ok(ticket()));
    let (status, why) = accept(&key(), &token, Some(("lab", "vm2")), 999).unwrap_err();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(why.contains("another VM"), "{why}");
    assert_eq!(
        accept(&key(), &token, None, 1000).unwrap_err().0,
        StatusCode::GONE
    );
    assert_eq!(
        accept(&key(), "x.y", None, 0).unwrap_err().0,
        StatusCode::BAD_REQUEST
    );
    // Another purpose's token (same root key) is not a ticket.
    let other = signed::sign(&SigningKey::new(&[3u8; 32]).unwrap().derive("confirm"), &ticket());
    assert_eq!(
        accept(&key(), &other, None, 0).unwrap_err().0,
        StatusCode::FORBIDDEN
    );
}

fn nodes() -> Vec<Node> {
    let node = |name: &str, ip: &str| Node {
        name: name.into(),
        primary_ip: Some(ip.into()),
        ..Default::default()
    };
    vec![
        node("node1.lab", "198.51.100.10"),
        node("node2.lab", "2001:db8::1"),
    ]
}

#[test]
fn the_vnc_endpoint_comes_from_ganeti_only_and_is_a_node() {
    let n = nodes();
    assert_eq!(
        from_instance(Some("0.0.0.0"), Some(11000), "node1.lab", &n),
        Ok(("198.51.100.10".into(), 11000))
    );
    assert_eq!(
        from_instance(Some("::"), Some(11001), "node2.lab", &n),
        Ok(("2001:db8::1".into(), 11001))
    );
    assert_eq!(
        from_instance(Some("198.51.100.10"), Some(11002), "node2.lab", &n),
        Ok(("198.51.100.10".into(), 11002))
    );
    assert_eq!(
        from_instance(Some("node2.lab"), Some(11003), "node1.lab", &n),
        Ok(("2001:db8::1".into(), 11003))
    );
    // No tunnel: an address that is no node of the cluster is never a target.
    for elsewhere in ["192.0.2.7", "10.0.0.1", "metadata.google.internal", "node3.lab"] {
        let why = from_instance(Some(elsewhere), Some(11000), "node1.lab", &n).unwrap_err();
        assert!(
            why.contains("not one of the cluster's nodes"),
            "{elsewhere}: {why}"
        );
    }
    assert!(
        from_instance(Some("127.0.0.1"), Some(11000), "node1.lab", &n)
            .unwrap_err()
            .contains("loopback")
    );
    assert!(from_instance(Some("0.0.0.0"), None, "node1.lab", &n).is_err());
    assert!(from_instance(Some(""), Some(11000), "node1.lab", &n).is_err());
    assert!(from_instance(Some("0.0.0.0"), Some(11000), "unknown", &n).is_err());
    let vnc = |instance: &str, host: &str| Console::Vnc {
        instance: instance.into(),
        host: host.into(),
        port: 11000,
        display: Some(5100),
    };
    assert_eq!(
        from_console(&vnc("vm1", "0.0.0.0"), "vm1", "node1.lab", &n),
        Ok(Some(("198.51.100.10".into(), 11000)))
    );
    // An answer about another instance (a prefix expansion, a race) is refused.
    assert!(
        from_console(&vnc("vm1.lab", "0.0.0.0"), "vm1", "node1.lab", &n)
            .unwrap_err()
            .contains("not of vm1")
    );
    let msg = Console::Msg {
        instance: "vm1".into(),
        message: Some("Console not available for fake hypervisor".into()),
    };
    assert!(
        from_console(&msg, "vm1", "node1.lab", &n)
            .unwrap_err()
            .contains("fake hypervisor")
    );
    // kvm's default serial console is answered as ssh: the VNC port is used then.
    let serial = Console::Ssh {
        instance: "vm1".into(),
        host: "node1.lab".into(),
        user: Some("root".into()),
        command: vec![],
    };
    assert_eq!(from_console(&serial, "vm1", "node1.lab", &n), Ok(None));
}

#[test]
fn only_the_operators_own_pages_may_open_the_websocket() {
    assert!(origin_allowed(None, Some("op:8080"), None), "non-browser clients");
    assert!(origin_allowed(Some("http://op:8080"), Some("op:8080"), None));
    assert!(origin_allowed(
        Some("http://127.0.0.1:8080"),
        Some("127.0.0.1:8080"),
        None
    ));
    assert!(!origin_allowed(
        Some("https://evil.example"),
        Some("op:8080"),
        None
    ));
    assert!(!origin_allowed(Some("null"), Some("op:8080"), None));
    assert!(origin_allowed(
        Some("https://vms.example.org"),
        Some("10.0.0.5:8080"),
        Some("https://vms.example.org/")
    ));
    assert!(!origin_allowed(
        Some("https://vms.example.org.evil"),
        Some("10.0.0.5:8080"),
        Some("https://vms.example.org")
    ));
}

#[test]
fn script_strings_cannot_break_out() {
    let s = js_string("</script><script>alert(1)</script>&");
    assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'), "{s}");
    assert!(s.starts_with('"') && s.ends_with('"'));
}
