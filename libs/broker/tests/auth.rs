//! Token authentication and authorization on `magnetar standalone` started
//! with a secret key, on all three surfaces (binary protocol, HTTP,
//! WebSocket), with tokens made by `magnetar tokens`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use magnetar_testkit::{bin_path, run_python, Standalone};

fn tokens(args: &[&str]) -> String {
    let out = Command::new(bin_path("magnetar"))
        .arg("tokens")
        .args(args)
        .output()
        .expect("run magnetar tokens");
    assert!(
        out.status.success(),
        "magnetar tokens {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn token(key: &Path, subject: &str, expiry: Option<&str>) -> String {
    let key = key.display().to_string();
    let mut args = vec!["create", "--secret-key", &key, "--subject", subject];
    if let Some(e) = expiry {
        args.extend(["--expiry-time", e]);
    }
    tokens(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_guard_every_surface() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("secret.key");
    let key_arg = key.display().to_string();
    tokens(&["create-secret-key", "--output", &key_arg]);
    let mut s =
        Standalone::start_with(&["--auth-secret-key", &key_arg, "--superuser-roles", "admin"]);
    s.wait_ready(Duration::from_secs(60)).await;
    let admin = token(&key, "admin", None);
    let bob = token(&key, "bob", Some("1h"));
    let expired = token(&key, "bob", Some("0s"));
    // Runs out a few seconds into the script: the broker must ask for a new one.
    let short = token(&key, "admin", Some("6s"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/auth.py");
    let out = run_python(
        &s,
        &script,
        &[&admin, &bob, &expired, &short],
        Duration::from_secs(180),
    );
    println!("{out}");
    assert!(out.contains("ok auth"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_pair_tokens_verify_and_bad_keys_stop_startup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("private.pem").display().to_string();
    let public = dir.path().join("public.pem").display().to_string();
    tokens(&[
        "create-key-pair",
        "--output-private-key",
        &private,
        "--output-public-key",
        &public,
    ]);
    let admin = tokens(&["create", "--private-key", &private, "--subject", "admin"]);
    // A public-key broker must be given its own token.
    let mut s = Standalone::start_with(&[
        "--auth-public-key",
        &public,
        "--broker-client-token",
        &admin,
    ]);
    s.wait_ready(Duration::from_secs(60)).await;
    let (code, _) =
        magnetar_testkit::http::get(&s.http, "/admin/v2/tenants/public", Duration::from_secs(10))
            .await
            .expect("GET");
    assert_eq!(code, 401, "no token must be refused");
    drop(s);
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").expect("write");
    let bad = bad.display().to_string();
    let out = Command::new(bin_path("magnetar"))
        .args(["standalone", "--auth-public-key", &bad, "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("run standalone");
    assert!(!out.status.success(), "standalone started with a bad key");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authentication"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
