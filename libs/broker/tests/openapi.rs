//! The OpenAPI document at `/admin/v2/openapi.json` against a running
//! standalone: every documented operation is served (none falls through to
//! "no such endpoint" or 405, none fails with a 5xx), and schemathesis'
//! generated requests — valid and invalid — never get a server error.

use std::path::PathBuf;
use std::time::Duration;

use magnetar_testkit::{run_python, Standalone};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openapi_check.py")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_served_and_fuzzing_finds_no_server_error() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let out = run_python(&s, &script(), &["routes"], Duration::from_secs(300));
    assert!(out.contains("ok routes"), "{out}");
    println!("{out}");
    let out = run_python(&s, &script(), &["fuzz"], Duration::from_secs(900));
    assert!(out.contains("ok fuzz"), "{out}");
    println!("{out}");
    // The service is still healthy afterwards.
    let (code, _) = magnetar_testkit::http::get(&s.http, "/health", Duration::from_secs(10))
        .await
        .expect("health");
    assert_eq!(code, 200);
}
