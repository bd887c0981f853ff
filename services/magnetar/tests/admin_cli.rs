//! `magnetar admin ...` as a separate process against `magnetar standalone`:
//! the REST calls it makes, its tables and `--json` output, the server's
//! reasons on stderr and the exit codes.

use std::process::Command;
use std::time::Duration;

use magnetar_testkit::{bin_path, free_port, BrokerCluster, PulsarService, Standalone};
use serde_json::{json, Value};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {}", self.stdout, self.stderr))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Failed with exit code 1 and `what` (status and reason) on stderr.
    #[track_caller]
    fn refused(self, what: &str) -> Self {
        assert_eq!(
            self.code, 1,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        assert!(
            self.stderr.contains(what),
            "{:?} not in {}",
            what,
            self.stderr
        );
        self
    }
}

fn run(url: &str, token: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(bin_path("magnetar"));
    cmd.arg("admin")
        .args(["--url", url, "--timeout", "30"])
        .args(args)
        .env_remove("MAGNETAR_TOKEN")
        .env_remove("MAGNETAR_ADMIN_URL");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.output().expect("run magnetar admin");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// True when the broker does not have this endpoint (yet): the CLI covers
/// endpoints that are still being added to the broker.
fn missing_endpoint(o: &Out) -> bool {
    o.code == 1 && o.stderr.contains("404") && o.stderr.contains("no such endpoint")
}

/// `n` messages, one `magnetar produce` each: one message per entry (a
/// single producer would batch them), so backlogs count exactly `n`.
fn produce(s: &Standalone, topic: &str, n: usize) {
    for _ in 0..n {
        let out = Command::new(bin_path("magnetar"))
            .args(["produce", topic, "--url", &s.service_url(), "-m", "hello"])
            .args(["-p", "color=blue"])
            .output()
            .expect("run magnetar produce");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_drives_the_rest_api() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let url = s.web_url();
    let admin = |args: &[&str]| run(&url, None, args);

    // ---- clusters and brokers
    let clusters = admin(&["--json", "clusters", "list"]).ok().json();
    assert_eq!(clusters, json!(["standalone"]));
    let brokers = admin(&["brokers", "list", "standalone", "--json"])
        .ok()
        .json();
    assert_eq!(brokers.as_array().map(Vec::len), Some(1), "{brokers}");
    let table = admin(&["brokers", "list", "standalone"]).ok();
    assert!(table.stdout.starts_with("BROKER\n"), "{}", table.stdout);

    // ---- tenants
    let created = admin(&["tenants", "create", "acme"]).ok();
    assert_eq!(created.stdout, "Created tenant acme\n");
    admin(&["tenants", "create", "acme"]).refused("409 Conflict: tenant acme already exists");
    let list = admin(&["tenants", "list"]).ok();
    assert!(list.stdout.starts_with("TENANT\n"), "{}", list.stdout);
    assert!(list.stdout.lines().any(|l| l == "acme"), "{}", list.stdout);
    let list = admin(&["tenants", "list", "--json"]).ok().json();
    assert!(list.as_array().unwrap().contains(&json!("acme")), "{list}");
    // No --allowed-clusters: every cluster, as pulsar-admin does.
    let info = admin(&["tenants", "get", "acme", "--json"]).ok().json();
    assert_eq!(info["allowedClusters"], json!(["standalone"]), "{info}");
    assert_eq!(info["adminRoles"], json!([]), "{info}");
    admin(&["tenants", "update", "acme", "--admin-roles", "alice,bob"]).ok();
    let info = admin(&["tenants", "get", "acme", "--json"]).ok().json();
    assert_eq!(info["adminRoles"], json!(["alice", "bob"]), "{info}");
    assert_eq!(
        info["allowedClusters"],
        json!(["standalone"]),
        "update keeps what it is not given"
    );
    let shown = admin(&["tenants", "get", "acme"]).ok();
    assert!(
        shown.stdout.contains("adminRoles       alice, bob"),
        "{}",
        shown.stdout
    );
    admin(&["tenants", "get", "nope"]).refused("404 Not Found: tenant nope does not exist");
    admin(&["tenants", "create", "other", "--allowed-clusters", "mars"]).refused("412");

    // ---- namespaces
    admin(&["namespaces", "create", "acme/ns1", "--bundles", "4"]).ok();
    admin(&["namespaces", "create", "acme/ns1"]).refused("409");
    let nss = admin(&["namespaces", "list", "acme", "--json"]).ok().json();
    assert_eq!(nss, json!(["acme/ns1"]));
    let bundles = admin(&["namespaces", "bundles", "acme/ns1"]).ok();
    assert_eq!(bundles.stdout.lines().count(), 5, "{}", bundles.stdout);
    assert!(
        bundles.stdout.contains("0x00000000_0x40000000"),
        "{}",
        bundles.stdout
    );
    let policies = admin(&["namespaces", "policies", "acme/ns1", "--json"])
        .ok()
        .json();
    assert_eq!(policies["bundles"]["numBundles"], 4, "{policies}");
    admin(&[
        "namespaces",
        "set-retention",
        "acme/ns1",
        "--time",
        "2h",
        "--size",
        "100",
    ])
    .ok();
    let retention = admin(&["namespaces", "get-retention", "acme/ns1", "--json"])
        .ok()
        .json();
    assert_eq!(
        retention,
        json!({"retentionTimeInMinutes": 120, "retentionSizeInMB": 100})
    );
    let shown = admin(&["namespaces", "get-retention", "acme/ns1"]).ok();
    assert!(
        shown.stdout.contains("retentionTimeInMinutes  120"),
        "{}",
        shown.stdout
    );
    admin(&["namespaces", "set-message-ttl", "acme/ns1", "--ttl", "1h"]).ok();
    let ttl = admin(&["namespaces", "get-message-ttl", "acme/ns1"]).ok();
    assert_eq!(ttl.stdout, "3600\n");
    admin(&["namespaces", "remove-message-ttl", "acme/ns1"]).ok();
    let ttl = admin(&["namespaces", "get-message-ttl", "acme/ns1"]).ok();
    assert_eq!(ttl.stdout, "not set\n");
    admin(&["namespaces", "set-deduplication", "acme/ns1", "--enable"]).ok();
    let dedup = admin(&["namespaces", "get-deduplication", "acme/ns1", "--json"]).ok();
    assert_eq!(dedup.json(), json!(true));
    admin(&["namespaces", "set-max-consumers-per-topic", "acme/ns1", "7"]).ok();
    let policies = admin(&["namespaces", "policies", "acme/ns1", "--json"])
        .ok()
        .json();
    assert_eq!(policies["max_consumers_per_topic"], 7, "{policies}");
    admin(&["namespaces", "policies", "acme/nope"])
        .refused("404 Not Found: namespace acme/nope does not exist");

    // Backlog quotas and offload policies: when this broker has them.
    let quota = admin(&[
        "namespaces",
        "set-backlog-quota",
        "acme/ns1",
        "--limit-size",
        "10M",
        "--policy",
        "producer_request_hold",
    ]);
    if !missing_endpoint(&quota) {
        quota.ok();
        let quotas = admin(&["namespaces", "get-backlog-quotas", "acme/ns1", "--json"])
            .ok()
            .json();
        let q = &quotas["destination_storage"];
        assert_eq!(q["limitSize"], 10 << 20, "{quotas}");
        assert_eq!(q["policy"], "producer_request_hold", "{quotas}");
        let table = admin(&["namespaces", "get-backlog-quotas", "acme/ns1"]).ok();
        assert!(table.stdout.starts_with("TYPE"), "{}", table.stdout);
        assert!(
            table.stdout.contains("destination_storage"),
            "{}",
            table.stdout
        );
        admin(&["namespaces", "remove-backlog-quota", "acme/ns1"]).ok();
        let quotas = admin(&["namespaces", "get-backlog-quotas", "acme/ns1", "--json"])
            .ok()
            .json();
        assert_eq!(quotas, json!({}));
    }
    let offload = admin(&[
        "namespaces",
        "set-offload-policies",
        "acme/ns1",
        "--driver",
        "aws-s3",
        "--bucket",
        "cold",
        "--region",
        "eu-west-1",
        "--threshold-bytes",
        "1G",
    ]);
    if !missing_endpoint(&offload) {
        offload.ok();
        let p = admin(&["namespaces", "get-offload-policies", "acme/ns1", "--json"])
            .ok()
            .json();
        assert_eq!(p["managedLedgerOffloadDriver"], "aws-s3", "{p}");
        assert_eq!(p["s3ManagedLedgerOffloadBucket"], "cold", "{p}");
        assert_eq!(p["managedLedgerOffloadThresholdInBytes"], 1 << 30, "{p}");
        admin(&[
            "namespaces",
            "set-offload-policies",
            "acme/ns1",
            "--json-body",
            "{not json",
        ])
        .refused("--json-body is not valid JSON");
    }

    // ---- permissions
    admin(&[
        "namespaces",
        "grant-permission",
        "acme/ns1",
        "--role",
        "app",
        "--actions",
        "produce,consume",
    ])
    .ok();
    let perms = admin(&["namespaces", "permissions", "acme/ns1", "--json"])
        .ok()
        .json();
    assert_eq!(perms, json!({"app": ["consume", "produce"]}));
    let table = admin(&["namespaces", "permissions", "acme/ns1"]).ok();
    assert_eq!(table.stdout, "ROLE  ACTIONS\napp   consume, produce\n");
    admin(&[
        "namespaces",
        "grant-permission",
        "acme/ns1",
        "--role",
        "app",
        "--actions",
        "fly",
    ])
    .refused("400 Bad Request");
    admin(&[
        "namespaces",
        "revoke-permission",
        "acme/ns1",
        "--role",
        "app",
    ])
    .ok();
    let perms = admin(&["namespaces", "permissions", "acme/ns1", "--json"])
        .ok()
        .json();
    assert_eq!(perms, json!({}));

    // ---- partitioned topics
    admin(&[
        "topics",
        "create-partitioned-topic",
        "acme/ns1/pt",
        "-p",
        "3",
    ])
    .ok();
    let list = admin(&["topics", "list-partitioned", "acme/ns1", "--json"])
        .ok()
        .json();
    assert_eq!(list, json!(["persistent://acme/ns1/pt"]));
    let stats = admin(&[
        "topics",
        "partitioned-stats",
        "persistent://acme/ns1/pt",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(stats["metadata"]["partitions"], 3, "{stats}");
    admin(&[
        "topics",
        "update-partitioned-topic",
        "acme/ns1/pt",
        "-p",
        "4",
    ])
    .ok();
    admin(&[
        "topics",
        "update-partitioned-topic",
        "acme/ns1/pt",
        "-p",
        "2",
    ])
    .refused("400");
    let stats = admin(&["topics", "partitioned-stats", "acme/ns1/pt", "--json"])
        .ok()
        .json();
    assert_eq!(stats["metadata"]["partitions"], 4, "{stats}");
    admin(&["topics", "delete-partitioned-topic", "acme/ns1/pt"]).ok();
    let list = admin(&["topics", "list-partitioned", "acme/ns1", "--json"])
        .ok()
        .json();
    assert_eq!(list, json!([]));

    // ---- a topic and its subscriptions
    let topic = "persistent://acme/ns1/t1";
    admin(&["topics", "create", topic]).ok();
    admin(&["topics", "create", topic]).refused("409");
    let topics = admin(&["topics", "list", "acme/ns1", "--json"]).ok().json();
    assert_eq!(topics, json!([topic]));
    admin(&[
        "topics",
        "create-subscription",
        topic,
        "-s",
        "sub1",
        "--message-id",
        "earliest",
    ])
    .ok();
    let subs = admin(&["topics", "subscriptions", "acme/ns1/t1", "--json"])
        .ok()
        .json();
    assert_eq!(subs, json!(["sub1"]));
    let subs = admin(&["topics", "subscriptions", "acme/ns1/t1"]).ok();
    assert_eq!(subs.stdout, "SUBSCRIPTION\nsub1\n");

    produce(&s, topic, 3);
    let stats = admin(&["topics", "stats", topic, "--json"]).ok().json();
    assert_eq!(stats["msgInCounter"], 3, "{stats}");
    assert_eq!(stats["subscriptions"]["sub1"]["msgBacklog"], 3, "{stats}");
    let table = admin(&["topics", "stats", topic]).ok();
    assert!(table.stdout.contains("subscriptions:"), "{}", table.stdout);
    assert!(table.stdout.contains("sub1"), "{}", table.stdout);
    let internal = admin(&["topics", "stats-internal", topic, "--json"])
        .ok()
        .json();
    assert!(internal["cursors"].get("sub1").is_some(), "{internal}");

    // Endpoints that may not be in this broker yet: checked when present.
    let peek = admin(&[
        "topics",
        "peek-messages",
        topic,
        "-s",
        "sub1",
        "-n",
        "2",
        "--json",
    ]);
    if !missing_endpoint(&peek) {
        let msgs = peek.ok().json();
        assert_eq!(msgs.as_array().map(Vec::len), Some(2), "{msgs}");
        assert_eq!(msgs[0]["payload"], "hello", "{msgs}");
        assert_eq!(msgs[0]["properties"]["color"], "blue", "{msgs}");
        assert_ne!(msgs[0]["messageId"], msgs[1]["messageId"], "{msgs}");
        let text = admin(&["topics", "peek-messages", topic, "-s", "sub1"]).ok();
        assert!(text.stdout.starts_with("Message ID: "), "{}", text.stdout);
        assert!(text.stdout.contains("property color"), "{}", text.stdout);
        assert!(text.stdout.contains("    hello\n"), "{}", text.stdout);
        admin(&["topics", "peek-messages", topic, "-s", "nope"]).refused("404");
    }
    let skip = admin(&["topics", "skip", topic, "-s", "sub1", "-n", "1"]);
    if !missing_endpoint(&skip) {
        skip.ok();
        let stats = admin(&["topics", "stats", topic, "--json"]).ok().json();
        assert_eq!(stats["subscriptions"]["sub1"]["msgBacklog"], 2, "{stats}");
    }

    let cleared = admin(&["topics", "clear-backlog", topic, "-s", "sub1"]).ok();
    assert_eq!(cleared.stdout, "Cleared the backlog of subscription sub1\n");
    let stats = admin(&["topics", "stats", topic, "--json"]).ok().json();
    assert_eq!(stats["subscriptions"]["sub1"]["msgBacklog"], 0, "{stats}");
    let peek = admin(&["topics", "peek-messages", topic, "-s", "sub1"]);
    if !missing_endpoint(&peek) {
        assert_eq!(peek.ok().stdout, "(no messages)\n");
    }
    admin(&[
        "topics",
        "reset-cursor",
        topic,
        "-s",
        "sub1",
        "--message-id",
        "earliest",
    ])
    .ok();
    let stats = admin(&["topics", "stats", topic, "--json"]).ok().json();
    assert_eq!(stats["subscriptions"]["sub1"]["msgBacklog"], 3, "{stats}");
    admin(&["topics", "reset-cursor", topic, "-s", "nope", "--time", "0"]).refused("404");

    admin(&[
        "topics",
        "grant-permission",
        topic,
        "--role",
        "reader",
        "--actions",
        "consume",
    ])
    .ok();
    let perms = admin(&["topics", "permissions", topic, "--json"])
        .ok()
        .json();
    assert_eq!(perms, json!({"reader": ["consume"]}));
    admin(&["topics", "revoke-permission", topic, "--role", "reader"]).ok();
    let perms = admin(&["topics", "permissions", topic, "--json"])
        .ok()
        .json();
    assert_eq!(perms, json!({}));

    let lookup = admin(&["topics", "lookup", topic, "--json"]).ok().json();
    let broker_url = lookup["brokerUrl"].as_str().unwrap_or_default();
    assert!(broker_url.starts_with("pulsar://"), "{lookup}");

    let gone = admin(&["topics", "unsubscribe", topic, "-s", "sub1", "--json"]).ok();
    assert_eq!(
        gone.json(),
        json!({}),
        "operations without an answer print {{}}"
    );
    let subs = admin(&["topics", "subscriptions", topic, "--json"])
        .ok()
        .json();
    assert_eq!(subs, json!([]));
    admin(&["topics", "stats", "acme/ns1/none"]).refused("404");

    let terminated = admin(&["topics", "terminate", topic]);
    if !missing_endpoint(&terminated) {
        let out = terminated.ok();
        assert!(
            out.stdout
                .starts_with(&format!("Terminated topic {topic}\n")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("ledgerId"), "{}", out.stdout);
    }

    // A short name is public/default's.
    admin(&["topics", "create", "short-one"]).ok();
    let topics = admin(&["topics", "list", "public/default", "--json"])
        .ok()
        .json();
    assert!(
        topics
            .as_array()
            .unwrap()
            .contains(&json!("persistent://public/default/short-one")),
        "{topics}"
    );
    admin(&["topics", "delete", "short-one"]).ok();

    // ---- clean up, in the order the broker requires
    admin(&["namespaces", "delete", "acme/ns1"]).refused("412");
    admin(&["topics", "delete", topic, "--force"]).ok();
    admin(&["tenants", "delete", "acme"]).refused("409");
    admin(&["namespaces", "delete", "acme/ns1"]).ok();
    admin(&["tenants", "delete", "acme"]).ok();
    admin(&["tenants", "get", "acme"]).refused("404");

    // Bad arguments are clap's (exit 2), before anything is sent.
    let bad = admin(&["topics", "create-subscription", topic]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad = admin(&["namespaces", "create", "not-a-namespace"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_sends_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    let key = key.to_str().unwrap();
    let tokens = |args: &[&str]| {
        let out = Command::new(bin_path("magnetar"))
            .arg("tokens")
            .args(args)
            .output()
            .expect("run magnetar tokens");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    tokens(&["create-secret-key", "--output", key]);
    let admin_token = tokens(&["create", "--secret-key", key, "--subject", "admin"]);
    let user_token = tokens(&["create", "--secret-key", key, "--subject", "someone"]);

    let mut s = Standalone::start_with(&["--auth-secret-key", key, "--superuser-roles", "admin"]);
    s.wait_ready(Duration::from_secs(60)).await;
    let url = s.web_url();

    run(&url, None, &["tenants", "list"]).refused("401");
    run(&url, Some(&user_token), &["tenants", "list"]).refused("403");
    let list = run(&url, Some(&admin_token), &["tenants", "list", "--json"])
        .ok()
        .json();
    assert!(
        list.as_array().unwrap().contains(&json!("public")),
        "{list}"
    );
}

/// Any broker takes the call: one that does not serve the topic answers 307
/// and the CLI follows it, body included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_follows_redirects_to_the_owner() {
    let mut c = BrokerCluster::start(1, 1, 2);
    c.wait_ready(Duration::from_secs(90)).await;
    let urls: Vec<String> = c
        .brokers
        .iter()
        .map(|b| format!("http://{}", b.http))
        .collect();
    let topic = "persistent://public/default/redirected";
    run(&urls[0], None, &["topics", "create", topic]).ok();
    let lookup = run(&urls[1], None, &["topics", "lookup", topic, "--json"])
        .ok()
        .json();
    let owner = lookup["httpUrl"].as_str().expect("httpUrl");
    assert!(
        urls.iter().any(|u| u == owner.trim_end_matches('/')),
        "{lookup}"
    );
    let other = urls
        .iter()
        .find(|u| u.as_str() != owner.trim_end_matches('/'))
        .expect("a broker that does not serve the topic");
    run(
        other,
        None,
        &[
            "topics",
            "create-subscription",
            topic,
            "-s",
            "s",
            "-m",
            "latest",
        ],
    )
    .ok();
    let stats = run(other, None, &["topics", "stats", topic, "--json"])
        .ok()
        .json();
    assert!(stats["subscriptions"].get("s").is_some(), "{stats}");
}

#[test]
fn admin_cli_without_a_server_exits_3() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run(&url, None, &["tenants", "list"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("cannot reach"), "{}", out.stderr);
}

/// `magnetar admin init` (the Helm chart's initialisation Job) against a
/// standalone with authentication: it signs its own superuser token, creates
/// what is missing, leaves what exists, fails at once on a wrong token, waits
/// for an unknown cluster until its deadline, and a bad spec changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_init_creates_what_is_missing_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    let key = key.to_str().unwrap();
    let magnetar = |args: &[&str]| {
        let out = Command::new(bin_path("magnetar"))
            .args(args)
            .env_remove("MAGNETAR_TOKEN")
            .env_remove("MAGNETAR_ADMIN_URL")
            .output()
            .expect("run magnetar");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    magnetar(&["tokens", "create-secret-key", "--output", key]).ok();
    let user_token = magnetar(&[
        "tokens",
        "create",
        "--secret-key",
        key,
        "--subject",
        "someone",
    ])
    .ok()
    .stdout;
    let user_token_file = dir.path().join("user.token");
    std::fs::write(&user_token_file, user_token.trim()).unwrap();

    let mut s = Standalone::start_with(&["--auth-secret-key", key, "--superuser-roles", "admin"]);
    s.wait_ready(Duration::from_secs(60)).await;
    let url = s.web_url();
    let admin_token = magnetar(&[
        "tokens",
        "create",
        "--secret-key",
        key,
        "--subject",
        "admin",
    ])
    .ok()
    .stdout;
    let admin = |args: &[&str]| run(&url, Some(admin_token.trim()), args);
    let clusters = admin(&["clusters", "list", "--json"]).ok().json();
    let cluster = clusters[0].as_str().expect("a cluster").to_string();
    let spec = r#"[{"name":"acme","adminRoles":["acme-admin"],
        "namespaces":[{"name":"orders","bundles":4},{"name":"audit"}]}]"#;
    let init = |extra: &[&str]| {
        let mut args = vec!["admin", "--url", &url, "init", "--cluster", &cluster];
        args.extend_from_slice(extra);
        magnetar(&args)
    };
    let as_admin = ["--secret-key-file", key, "--superuser", "admin"];

    // A bad spec is refused before anything is sent.
    let bad = init(
        &[
            &as_admin[..],
            &["--tenants-json", r#"[{"name":"bad/name"}]"#],
        ]
        .concat(),
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    // A token without the rights fails at once, not after the wait.
    let started = std::time::Instant::now();
    let user_file = user_token_file.to_str().unwrap();
    init(&["--token-file", user_file, "--tenants-json", spec]).refused("403");
    assert!(started.elapsed() < Duration::from_secs(20));
    admin(&["tenants", "get", "acme"]).refused("404");

    let first = init(&[&as_admin[..], &["--tenants-json", spec]].concat()).ok();
    assert!(
        first.stdout.contains("magnetar-init: created tenant acme"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("created namespace acme/orders"),
        "{}",
        first.stdout
    );
    let tenant = admin(&["tenants", "get", "acme", "--json"]).ok().json();
    assert_eq!(tenant["adminRoles"], json!(["acme-admin"]));
    assert_eq!(tenant["allowedClusters"], json!([cluster]));
    let bundles = admin(&["namespaces", "bundles", "acme/orders", "--json"])
        .ok()
        .json();
    assert_eq!(bundles["numBundles"], json!(4), "{bundles}");

    // Again: everything exists and is left as it is.
    admin(&["tenants", "update", "acme", "--admin-roles", "changed"]).ok();
    let again = init(&[&as_admin[..], &["--tenants-json", spec]].concat()).ok();
    assert!(
        again.stdout.contains("tenant acme exists; left as it is"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.ends_with("magnetar-init: done\n"),
        "{}",
        again.stdout
    );
    let tenant = admin(&["tenants", "get", "acme", "--json"]).ok().json();
    assert_eq!(tenant["adminRoles"], json!(["changed"]));

    // A cluster no broker serves: retried until the deadline, then a failure.
    let mut args = vec!["admin", "--url", &url, "init", "--cluster", "elsewhere"];
    args.extend_from_slice(&as_admin);
    args.extend_from_slice(&["--wait-seconds", "2", "--retry-seconds", "1"]);
    magnetar(&args).refused("no broker served cluster elsewhere within 2 s");
}
