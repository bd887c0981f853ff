//! Namespace storage policies (backlog quotas with all three actions, offload
//! policies), subscription skip and peek, and topic terminate, driven by the
//! official Python client and the admin REST API against `magnetar standalone`.

use std::path::PathBuf;
use std::time::Duration;

use magnetar_testkit::{run_python, Standalone};

#[tokio::test(flavor = "multi_thread")]
async fn backlog_quotas_skip_peek_terminate_offload() {
    let mut s = Standalone::start_with(&["--backlog-quota-check-interval-ms", "500"]);
    s.wait_ready(Duration::from_secs(60)).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/compat.py");
    let cases = [
        "backlog_quota_bad_input",
        "backlog_quota_hold",
        "backlog_quota_exception",
        "backlog_quota_eviction",
        "backlog_quota_age",
        "skip_and_peek",
        "terminate",
        "offload_policies",
    ];
    let out = run_python(&s, &script, &cases, Duration::from_secs(300));
    for case in cases {
        assert!(
            out.contains(&format!("ok {case} ")),
            "{case} did not finish:\n{out}"
        );
    }
    println!("{out}");
}
