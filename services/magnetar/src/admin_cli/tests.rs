use super::*;
use clap::Parser;

#[derive(Parser)]
struct Root {
    #[command(flatten)]
    admin: AdminCli,
}

fn plan_of(args: &[&str]) -> Plan {
    let root = Root::try_parse_from(std::iter::once("admin").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    plan(root.admin.group).unwrap()
}

fn one(args: &[&str]) -> (Method, String, Option<Value>) {
    match plan_of(args) {
        Plan::One(c) => (c.method, c.path, c.body),
        _ => panic!("{args:?} is not one call"),
    }
}

fn rejected(args: &[&str]) -> bool {
    Root::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).is_err()
}

#[test]
fn topic_names_take_every_spelling() {
    let short = one(&["topics", "stats", "x"]).1;
    let mid = one(&["topics", "stats", "public/default/x"]).1;
    let full = one(&["topics", "stats", "persistent://public/default/x"]).1;
    assert_eq!(short, "/admin/v2/persistent/public/default/x/stats");
    assert_eq!(short, mid);
    assert_eq!(short, full);
    assert!(rejected(&["topics", "stats", "non-persistent://a/b/c"]));
    assert!(rejected(&["topics", "stats", "a/b"]));
}

#[test]
fn subscription_paths_and_bodies() {
    assert_eq!(
        one(&["topics", "skip", "t", "-s", "my sub/1", "-n", "5"]),
        (
            Method::POST,
            "/admin/v2/persistent/public/default/t/subscription/my%20sub%2F1/skip/5".into(),
            None
        )
    );
    let (m, p, b) = one(&[
        "topics",
        "create-subscription",
        "a/b/t",
        "-s",
        "s",
        "--message-id",
        "3:7",
    ]);
    assert_eq!(
        (m, p.as_str()),
        (Method::PUT, "/admin/v2/persistent/a/b/t/subscription/s")
    );
    assert_eq!(b, Some(json!({"ledgerId": 3, "entryId": 7})));
    let (_, p, b) = one(&[
        "topics",
        "reset-cursor",
        "t",
        "-s",
        "s",
        "--time",
        "1700000000000",
    ]);
    assert!(p.ends_with("/subscription/s/resetcursor/1700000000000"));
    assert_eq!(b, None);
    assert!(rejected(&["topics", "reset-cursor", "t", "-s", "s"]));
    let (_, p, _) = one(&["topics", "unsubscribe", "t", "-s", "s", "--force"]);
    assert!(p.ends_with("/subscription/s?force=true"));
    let (_, p, _) = one(&["topics", "clear-backlog", "t", "-s", "s"]);
    assert!(p.ends_with("/subscription/s/skip_all"));
}

#[test]
fn namespace_policies_bodies() {
    assert_eq!(
        one(&[
            "namespaces",
            "set-retention",
            "a/b",
            "--time",
            "2h",
            "--size",
            "-1"
        ])
        .2,
        Some(json!({"retentionTimeInMinutes": 120, "retentionSizeInMB": -1}))
    );
    let (m, p, b) = one(&[
        "namespaces",
        "set-backlog-quota",
        "a/b",
        "--limit-size",
        "10G",
        "--policy",
        "producer_exception",
    ]);
    assert_eq!(m, Method::POST);
    assert_eq!(
        p,
        "/admin/v2/namespaces/a/b/backlogQuota?backlogQuotaType=destination_storage"
    );
    assert_eq!(
        b,
        Some(json!({"limitSize": 10i64 << 30, "limitTime": -1, "policy": "producer_exception"}))
    );
    let (_, p, _) = one(&[
        "namespaces",
        "set-backlog-quota",
        "a/b",
        "--limit-time",
        "1h",
        "-p",
        "consumer_backlog_eviction",
    ]);
    assert!(p.ends_with("backlogQuotaType=message_age"));
    assert!(rejected(&[
        "namespaces",
        "set-backlog-quota",
        "a/b",
        "-p",
        "producer_exception"
    ]));
    assert_eq!(
        one(&["namespaces", "set-deduplication", "a/b", "--disable"]).2,
        Some(json!(false))
    );
    assert!(rejected(&["namespaces", "set-deduplication", "a/b"]));
    assert!(rejected(&[
        "namespaces",
        "set-deduplication",
        "a/b",
        "-e",
        "-d"
    ]));
    assert_eq!(
        one(&["namespaces", "create", "a/b", "--bundles", "8"]).2,
        Some(json!({"bundles": {"numBundles": 8}}))
    );
    assert_eq!(
        one(&[
            "namespaces",
            "set-offload-policies",
            "a/b",
            "--driver",
            "aws-s3",
            "--bucket",
            "bk"
        ])
        .2,
        Some(json!({"managedLedgerOffloadDriver": "aws-s3", "s3ManagedLedgerOffloadBucket": "bk"}))
    );
    assert_eq!(
        one(&[
            "namespaces",
            "set-offload-policies",
            "a/b",
            "--json-body",
            "{\"x\":1}"
        ])
        .2,
        Some(json!({"x": 1}))
    );
    assert!(rejected(&[
        "namespaces",
        "set-offload-policies",
        "a/b",
        "--bucket",
        "b"
    ]));
    assert_eq!(
        one(&[
            "namespaces",
            "grant-permission",
            "a/b",
            "--role",
            "r",
            "--actions",
            "produce,consume"
        ]),
        (
            Method::POST,
            "/admin/v2/namespaces/a/b/permissions/r".into(),
            Some(json!(["produce", "consume"]))
        )
    );
}

#[test]
fn tenants_update_keeps_what_is_not_given() {
    assert_eq!(
        plan_of(&["tenants", "update", "t", "--admin-roles", ""]),
        Plan::UpdateTenant {
            tenant: "t".into(),
            admin_roles: Some(vec![]),
            allowed_clusters: None
        }
    );
    assert!(rejected(&["tenants", "update", "t"]));
    assert!(rejected(&["tenants", "get", "a/b"]));
}

#[test]
fn global_flags_are_checked() {
    assert!(rejected(&["--url", "ftp://x:1", "clusters", "list"]));
    assert!(rejected(&["--url", "not a url", "clusters", "list"]));
    assert!(rejected(&["--timeout", "-1", "clusters", "list"]));
    assert!(rejected(&["--timeout", "NaN", "clusters", "list"]));
    assert!(!rejected(&[
        "clusters",
        "list",
        "--json",
        "--timeout",
        "2.5"
    ]));
}

#[test]
fn units() {
    assert_eq!(parse_minutes("90"), Ok(90));
    assert_eq!(parse_minutes("1d"), Ok(1440));
    assert_eq!(parse_megabytes("2G"), Ok(2048));
    assert_eq!(parse_bytes("1k"), Ok(1024));
    assert_eq!(parse_seconds("2m"), Ok(120));
    assert!(parse_seconds("5x").is_err());
    assert!(parse_bytes("99999999999T").is_err());
    assert!(parse_minutes("").is_err());
    assert_eq!(parse_message_id("earliest"), Ok(MessageId::Earliest));
    assert!(parse_message_id("1:-2").is_err());
    assert!(parse_message_id("1").is_err());
}

#[test]
fn redirects_resolve() {
    assert_eq!(resolve("http://a:1/x/y?q", "http://b:2/z"), "http://b:2/z");
    assert_eq!(resolve("http://a:1/x/y", "/z?w"), "http://a:1/z?w");
}

#[test]
fn tables_align() {
    let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
    assert_eq!(t, "A    LONG\nxyz  1\n");
    let list = render(&Show::List("TENANT"), &json!(["public", "acme"]));
    assert_eq!(list, "TENANT\npublic\nacme\n");
    assert_eq!(render(&Show::List("T"), &json!([])), "(none)\n");
    assert_eq!(render(&Show::Value, &Value::Null), "not set\n");
    let perms = render(
        &Show::Map("ROLE", "ACTIONS"),
        &json!({"app": ["consume", "produce"]}),
    );
    assert_eq!(perms, "ROLE  ACTIONS\napp   consume, produce\n");
    let bundles = render(
        &Show::Bundles,
        &json!({"boundaries": ["0x00000000", "0x80000000", "0xffffffff"], "numBundles": 2}),
    );
    assert_eq!(
        bundles,
        "BUNDLE\n0x00000000_0x80000000\n0x80000000_0xffffffff\n"
    );
}

#[test]
fn documents_show_fields_then_sections() {
    let stats = json!({
        "msgInCounter": 3,
        "publishers": [],
        "subscriptions": {
            "s1": {"consumers": [{}, {}], "msgBacklog": 3, "type": "Exclusive"},
            "s2": {"consumers": [], "msgBacklog": 0, "type": "Shared"}
        }
    });
    let text = render(&Show::Doc, &stats);
    assert_eq!(
        text,
        "msgInCounter  3\npublishers    -\n\nsubscriptions:\n  \
         name  consumers  msgBacklog  type\n  \
         s1    2          3           Exclusive\n  \
         s2    -          0           Shared\n"
    );
}

#[test]
fn hex_dump_lines() {
    let d = hex_dump(b"\x00ab");
    assert!(d.starts_with("00000000  00 61 62"), "{d}");
    assert!(d.trim_end().ends_with(".ab"), "{d}");
}

#[test]
fn raw_json_of_nothing_is_an_empty_object() {
    assert_eq!(raw_json(&Bytes::new()), "{}\n");
    assert_eq!(raw_json(&Bytes::from_static(b"[\"a\"]")), "[\"a\"]\n");
}
#[test]
fn offload_keeps_the_newest_ledgers_within_the_threshold() {
    let stats = json!({"ledgers": [
        {"ledgerId": 1, "size": 100}, {"ledgerId": 2, "size": 100},
        {"ledgerId": 3, "size": 100}, {"ledgerId": 4, "size": 10}]});
    // 10 + 100 fit in 150, with ledger 2 it would be 210: keep 3 and 4.
    assert_eq!(offload_boundary(&stats, 150), Some(3));
    assert_eq!(offload_boundary(&stats, 0), Some(4));
    assert_eq!(offload_boundary(&stats, 10), Some(4));
    assert_eq!(offload_boundary(&stats, 1000), None);
}
