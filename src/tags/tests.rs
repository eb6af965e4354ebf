#[test]
fn users_keep_out_of_the_reserved_namespaces() {
    assert!(check_user_tag("web", "acme").is_ok());
    assert!(check_user_tag("team:web", "acme").is_ok());
    for reserved in [
        "acme:owner:U:bob",
        "ACME:admin:U:bob",
        "GANETI_WEB_MANAGER:admin:U:bob",
        "ganetimgr:adminlock",
        "Ganetimgr:isolate",
        "acme",
    ] {
        let e = check_user_tag(reserved, "acme").unwrap_err();
        assert!(e.contains("namespace"), "{reserved}: {e}");
    }
    assert!(check_user_tag("has space", "acme").is_err());
}

use super::*;
use proptest::prelude::*;

const P: &str = DEFAULT_PREFIX;

#[test]
fn plain_names_are_unchanged() {
    for name in [
        "alice",
        "bob@example.org",
        "team-a_1",
        "system:serviceaccount:ns:sa",
    ] {
        assert!(matches!(encode_subject(name), Cow::Borrowed(n) if n == name));
    }
}

#[test]
fn special_characters_are_escaped() {
    assert_eq!(encode_subject("alice smith"), "alice+20smith");
    assert_eq!(encode_subject("böb"), "b+C3+B6b");
    assert_eq!(encode_subject("a+b"), "a+2Bb");
    assert_eq!(decode_subject("b+C3+B6b").unwrap(), "böb");
}

#[test]
fn decoding_is_strict() {
    for bad in ["a+2b", "a+4", "a+41", "a+ZZ", "+FF", "a b", "a%20b"] {
        assert_eq!(decode_subject(bad), None, "{bad}");
    }
}

#[test]
fn parses_gwm_grants_and_owners() {
    assert_eq!(
        parse("GANETI_WEB_MANAGER:power:U:bob", P),
        Some(ParsedTag::GwmGrant {
            perm: GwmPerm::Power,
            subject: Subject::user("bob")
        })
    );
    assert_eq!(
        parse("GANETI_WEB_MANAGER:admin:G:system:serviceaccounts:ns", P),
        Some(ParsedTag::GwmGrant {
            perm: GwmPerm::Admin,
            subject: Subject::group("system:serviceaccounts:ns")
        })
    );
    assert_eq!(
        parse("GANETI_WEB_MANAGER:owner:U:alice+20smith", P),
        Some(ParsedTag::Owner(Subject::user("alice smith")))
    );
    assert_eq!(
        parse("ganetimgr:user:a+b", P),
        Some(ParsedTag::GanetimgrOwner(Subject::user("a+b")))
    );
    assert_eq!(
        parse("ganetimgr:group:ops", P),
        Some(ParsedTag::GanetimgrOwner(Subject::group("ops")))
    );
    assert_eq!(parse("ganetimgr:adminlock", P), Some(ParsedTag::AdminLock));
    assert_eq!(parse("ganetimgr:isolate", P), Some(ParsedTag::Isolate));
    assert_eq!(parse("ganetimgr:needsreboot", P), Some(ParsedTag::NeedsReboot));
    assert_eq!(
        parse("ganetimgr:whitelist_ip:192.0.2.0/24", P),
        Some(ParsedTag::WhitelistIp("192.0.2.0/24".into()))
    );
}

#[test]
fn other_prefixes_and_malformed_tags_are_other() {
    for tag in [
        "GANETI_WEB_MANAGER:power:X:bob",
        "GANETI_WEB_MANAGER:fly:U:bob",
        "GANETI_WEB_MANAGER:power:U:",
        "GANETI_WEB_MANAGER:power:U:a+2b",
        "GANETI_WEB_MANAGER:power",
        "MYPREFIX:power:U:bob",
        "GANETI_WEB_MANAGER:power:U:02",
        "GANETI_WEB_MANAGER:fly:U:2",
        "GANETI_WEB_MANAGER:power:U:+32x",
        "GANETI_WEB_MANAGER:power:U:99999999999999999999999",
        "ganetimgr:whitelist_ip:",
        "ganetimgr:user:",
        "webserver",
    ] {
        assert_eq!(parse(tag, P), Some(ParsedTag::Other), "{tag}");
    }
    assert_eq!(
        parse("MYPREFIX:power:U:bob", "MYPREFIX"),
        Some(ParsedTag::GwmGrant {
            perm: GwmPerm::Power,
            subject: Subject::user("bob")
        })
    );
    assert_eq!(parse("has space", P), None);
    assert_eq!(parse("", P), None);
    assert_eq!(parse(&"a".repeat(129), P), None);
}

#[test]
fn long_tags_are_errors_not_truncated() {
    let subject = Subject::user("x".repeat(120));
    assert_eq!(
        format_owner(P, &subject),
        Err(TagError::TooLong {
            len: P.len() + ":owner:U:".len() + 120
        })
    );
    assert!(matches!(
        format_owner("a:b", &Subject::user("x")),
        Err(TagError::InvalidPrefix(_))
    ));
    assert_eq!(format_owner(P, &Subject::user("")), Err(TagError::EmptySubject));
}

#[test]
fn covering_never_grants_more() {
    use VmRight::*;
    let set = |rs: &'static [VmRight]| move |r: VmRight| rs.contains(&r);
    assert_eq!(GwmPerm::covering(set(&[Admin])), vec![GwmPerm::Admin]);
    assert_eq!(
        GwmPerm::covering(set(&[View, Start, Shutdown, Reboot, Console, Destroy])),
        vec![GwmPerm::Remove, GwmPerm::Power]
    );
    assert_eq!(
        GwmPerm::covering(set(&[View, Start, Shutdown])),
        vec![GwmPerm::Start]
    );
    assert_eq!(GwmPerm::covering(set(&[Start, Shutdown])), vec![]);
    for p in GwmPerm::ALL {
        assert_eq!(GwmPerm::parse(p.as_str()), Some(*p));
    }
}

fn subject() -> impl Strategy<Value = Subject> {
    (any::<bool>(), "\\PC{1,40}|[a-z+:%. ]{1,20}").prop_map(|(user, name)| {
        if user {
            Subject::user(name)
        } else {
            Subject::group(name)
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn encoding_round_trips(name in "\\PC{0,60}|[a-zA-Z0-9+:%_ .@-]{0,30}|.{0,10}") {
        let encoded = encode_subject(&name);
        prop_assert!(encoded.chars().all(is_tag_char));
        let decoded = decode_subject(&encoded);
        prop_assert_eq!(decoded.as_deref(), Some(name.as_str()));
    }

    #[test]
    fn tags_round_trip_or_fail_typed(
        subject in subject(),
        perm in proptest::sample::select(GwmPerm::ALL),
        owner in any::<bool>(),
    ) {
        let parsed = if owner {
            ParsedTag::Owner(subject)
        } else {
            ParsedTag::GwmGrant { perm, subject }
        };
        match parsed.format(P) {
            Ok(tag) => {
                prop_assert!(tag.len() <= MAX_TAG_LEN);
                prop_assert!(tag.chars().all(is_tag_char));
                prop_assert_eq!(parse(&tag, P), Some(parsed));
            }
            Err(e) => {
                let too_long = matches!(e, TagError::TooLong { len } if len > MAX_TAG_LEN);
                prop_assert!(too_long, "unexpected error {:?}", e);
            }
        }
    }

    #[test]
    fn parse_then_format_is_identity(tag in "(GANETI_WEB_MANAGER|ganetimgr)(:[a-zA-Z0-9+:_]{0,12}){0,4}") {
        if let Some(parsed) = parse(&tag, P)
            && parsed != ParsedTag::Other
        {
            prop_assert_eq!(parsed.format(P), Ok(tag));
        }
    }
}

#[test]
fn numeric_subjects_are_gwm_ids_and_grant_nothing_unmapped() {
    let id = |perm, kind, id| Some(ParsedTag::GwmId { perm, kind, id });
    assert_eq!(
        parse("GANETI_WEB_MANAGER:admin:U:2", P),
        id(Some(GwmPerm::Admin), SubjectKind::User, 2)
    );
    assert_eq!(
        parse("GANETI_WEB_MANAGER:start:G:5", P),
        id(Some(GwmPerm::Start), SubjectKind::Group, 5)
    );
    assert_eq!(
        parse("GANETI_WEB_MANAGER:owner:U:7", P),
        id(None, SubjectKind::User, 7)
    );
    // Without a map a reader leaves them alone: nobody named "2" gets anything.
    assert_eq!(
        Reader::new(P).parse("GANETI_WEB_MANAGER:admin:U:2"),
        id(Some(GwmPerm::Admin), SubjectKind::User, 2)
    );
}

#[test]
fn a_map_resolves_ids_to_its_names_only() {
    let ids = GwmIds::from_data(&std::collections::BTreeMap::from([
        ("users".to_string(), "2: alice\n".to_string()),
        ("groups".to_string(), "5: team-a\n".to_string()),
    ]))
    .unwrap();
    let r = Reader {
        prefix: P,
        ids: Some(&ids),
    };
    assert_eq!(
        r.parse("GANETI_WEB_MANAGER:admin:U:2"),
        Some(ParsedTag::GwmGrant {
            perm: GwmPerm::Admin,
            subject: Subject::user("alice")
        })
    );
    assert_eq!(
        r.parse("GANETI_WEB_MANAGER:power:G:5"),
        Some(ParsedTag::GwmGrant {
            perm: GwmPerm::Power,
            subject: Subject::group("team-a")
        })
    );
    assert_eq!(
        r.parse("GANETI_WEB_MANAGER:owner:U:2"),
        Some(ParsedTag::Owner(Subject::user("alice")))
    );
    // Users and groups are separate id spaces; an unmapped id stays an id.
    assert_eq!(
        r.parse("GANETI_WEB_MANAGER:admin:G:2"),
        Some(ParsedTag::GwmId {
            perm: Some(GwmPerm::Admin),
            kind: SubjectKind::Group,
            id: 2
        })
    );
    // Names are untouched by the map.
    assert_eq!(
        r.parse("GANETI_WEB_MANAGER:admin:U:bob"),
        parse("GANETI_WEB_MANAGER:admin:U:bob", P)
    );
}

#[test]
fn numeric_names_and_ids_have_one_spelling_each() {
    assert_eq!(encode_subject("2"), "+32");
    assert_eq!(encode_subject("205"), "+3205");
    assert_eq!(encode_subject("2a"), "2a");
    assert_eq!(decode_subject("+3205").unwrap(), "205");
    assert_eq!(decode_subject("205"), None, "plain digits are an id, not a name");
    assert_eq!(decode_subject("+32a"), None);
    assert_eq!(
        format_grant(P, GwmPerm::Admin, &Subject::user("2")).unwrap(),
        "GANETI_WEB_MANAGER:admin:U:+32"
    );
    assert_eq!(
        parse("GANETI_WEB_MANAGER:admin:U:+32", P),
        Some(ParsedTag::GwmGrant {
            perm: GwmPerm::Admin,
            subject: Subject::user("2")
        })
    );
    assert_eq!(
        format_grant_id(P, GwmPerm::Power, SubjectKind::Group, 5).unwrap(),
        "GANETI_WEB_MANAGER:power:G:5"
    );
}

#[test]
fn owner_tags_include_every_prefix_and_malformed_owners() {
    let tags: Vec<String> = [
        "ops:owner:U:alice",               // the cluster's prefix
        "GANETI_WEB_MANAGER:owner:G:team", // the default one
        "ganetimgr:user:bob",              // ganetimgr's
        "ganetimgr:group:staff",
        "ops:owner:Q:???",    // malformed, still an owner
        "ops:admin:U:carol",  // a grant, not an owner
        "other:owner:U:dave", // another tool's prefix
        "ganetimgr:needsreboot",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        owner_tags(&tags, "ops"),
        [
            "ops:owner:U:alice",
            "GANETI_WEB_MANAGER:owner:G:team",
            "ganetimgr:user:bob",
            "ganetimgr:group:staff",
            "ops:owner:Q:???",
        ]
    );
    assert!(owner_tags(&tags[5..], "ops").is_empty());
}
