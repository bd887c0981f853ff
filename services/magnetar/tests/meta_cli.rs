//! `magnetar meta ...` against a real 3-node cluster: JSON output, exit codes,
//! and clear errors.

use std::process::Command;
use std::time::Duration;

use magnetar_testkit::{bin_path, MetaCluster};
use serde_json::Value;

struct Out {
    code: i32,
    json: Value,
    stderr: String,
}

fn meta(endpoints: &str, args: &[&str]) -> Out {
    let out = Command::new(bin_path("magnetar"))
        .arg("meta")
        .args(["--meta", endpoints, "--timeout", "15"])
        .args(args)
        .output()
        .expect("run magnetar");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Out {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reads_writes_and_reports_errors() {
    let cluster = MetaCluster::start(3);
    // `status` may ask any node: wait until every node knows the leader.
    let leader = cluster
        .wait_for_leader_known_to_all(Duration::from_secs(30))
        .await;
    let ep = cluster.endpoints();
    let ep = ep.as_str();

    let s = meta(ep, &["status"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(s.json["leader"], leader);
    assert!(s.json["term"].as_u64().unwrap() >= 1);
    assert_eq!(s.json["members"].as_array().unwrap().len(), 3);

    let p = meta(ep, &["put", "tenants/public", "{\"adminRoles\":[]}"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(p.json["version"], 1);

    let g = meta(ep, &["get", "tenants/public"]);
    assert_eq!(g.json["value"], "{\"adminRoles\":[]}");
    assert_eq!(g.json["version"], 1);

    // CAS: wrong version → exit 2 with a clear message, value unchanged.
    let bad = meta(ep, &["put", "tenants/public", "x", "--expect-version", "7"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("expected version 7, found 1"),
        "{}",
        bad.stderr
    );
    let ok = meta(ep, &["put", "tenants/public", "y", "--expect-version", "1"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json["version"], 2);

    let t = meta(
        ep,
        &[
            "txn",
            "--cmp",
            "a=0",
            "--cmp",
            "tenants/public=2",
            "--put",
            "a=1",
            "--put",
            "b=2",
        ],
    );
    assert_eq!(t.json["succeeded"], true, "{}", t.stderr);
    let t = meta(
        ep,
        &["txn", "--cmp", "a=0", "--put", "a=9", "--else-del", "b"],
    );
    assert_eq!(t.json["succeeded"], false);
    assert_eq!(t.json["compare_versions"][0], 1);
    assert_eq!(meta(ep, &["get", "b"]).code, 1, "the else branch deleted b");

    let l = meta(ep, &["list", "", "--keys-only"]);
    assert_eq!(l.json["kvs"], serde_json::json!(["a", "tenants/public"]));

    let w = meta(
        ep,
        &["watch", "tenants/", "--from-revision", "1", "--count", "2"],
    );
    assert_eq!(w.code, 0, "{}", w.stderr);
    assert_eq!(w.json["value"], "y", "second event is the CAS update");

    let d = meta(ep, &["del", "", "--prefix"]);
    assert_eq!(d.json["deleted"], 2);

    let missing = meta(ep, &["get", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("not found"));

    let lease = meta(ep, &["lease", "grant", "30"]);
    let id = lease.json["id"].as_i64().unwrap().to_string();
    assert_eq!(meta(ep, &["put", "owned", "1", "--lease", &id]).code, 0);
    let leases = meta(ep, &["lease", "list"]);
    assert_eq!(leases.json["leases"][0]["keys"], 1);
    assert_eq!(meta(ep, &["lease", "revoke", &id]).code, 0);
    assert_eq!(
        meta(ep, &["get", "owned"]).code,
        1,
        "revoking the lease deleted its key"
    );

    let m = meta(ep, &["members", "list"]);
    assert_eq!(m.json["members"].as_array().unwrap().len(), 3);
}

#[test]
fn cli_without_a_reachable_service_fails_fast_with_exit_3() {
    let port = magnetar_testkit::free_port();
    let out = Command::new(bin_path("magnetar"))
        .args([
            "meta",
            "--meta",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "1",
            "put",
            "k",
            "v",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unavailable"), "{stderr}");
}

/// `meta check-linearizable` records a real history against three nodes and
/// checks it; a prefix already holding someone else's value, or a bad
/// duration, is refused with a reason instead of a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_linearizable_records_and_checks_a_history() {
    let cluster = MetaCluster::start(3);
    cluster
        .wait_for_leader_known_to_all(Duration::from_secs(30))
        .await;
    let ep = cluster.endpoints();
    let ep = ep.as_str();

    let args = ["check-linearizable", "--duration", "3", "--prefix", "lin/a"];
    let ok = meta(ep, &args);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json["linearizable"], true, "{}", ok.json);
    assert_eq!(ok.json["registers"], 3, "{}", ok.json);
    assert!(ok.json["operations"].as_u64().unwrap() >= 30, "{}", ok.json);

    let p = meta(ep, &["put", "lin/b/0/0", "not-a-number"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let args = [
        "check-linearizable",
        "--duration",
        "2",
        "--keys",
        "1",
        "--prefix",
        "lin/b",
    ];
    let foreign = meta(ep, &args);
    assert_eq!(foreign.code, 1);
    assert!(
        foreign.stderr.contains("choose a fresh --prefix"),
        "{}",
        foreign.stderr
    );

    let args = ["check-linearizable", "--duration", "0", "--prefix", "lin/c"];
    let bad = meta(ep, &args);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("--duration must be a positive"),
        "{}",
        bad.stderr
    );
}
