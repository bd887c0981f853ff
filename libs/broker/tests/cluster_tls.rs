//! A cluster (3 metadata nodes, 3 bookies, 2 brokers) whose internal
//! traffic — metadata RPC, Raft between metadata nodes, bookie RPC — is
//! mutual TLS over a cluster CA made by the test (`MAGNETAR_INTERNAL_TLS_*`,
//! the same for every process): a process without the cluster's
//! certificate is refused, the official client over `pulsar+ssl` follows
//! lookups to the other broker's TLS URL, and producers survive the SIGKILL
//! of the broker serving most of their topics with every acknowledged
//! message read back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use magnetar_testkit::tls::TestCa;
use magnetar_testkit::{bin_path, free_port, http, run_python, BrokerCluster, PulsarService, Urls};
use magnetar_tls::internal::{ENV_CA, ENV_CERT, ENV_KEY, ENV_MUTUAL};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/cluster.py")
}

fn tls_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tls.py")
}

fn python(svc: &dyn PulsarService, args: &[&str], timeout: Duration) -> String {
    let out = run_python(svc, &script(), args, timeout);
    println!("{out}");
    out
}

/// The HTTP address of the broker serving `topic`.
async fn owner_of(c: &BrokerCluster, topic: &str) -> String {
    let path = format!(
        "/lookup/v2/topic/{}",
        topic.replace("persistent://", "persistent/")
    );
    let (code, body) = http::get(&c.brokers[0].http, &path, Duration::from_secs(30))
        .await
        .expect("lookup");
    assert_eq!(code, 200, "lookup {topic}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("lookup JSON");
    v["httpUrl"]
        .as_str()
        .expect("httpUrl")
        .trim_start_matches("http://")
        .to_string()
}

/// `magnetar meta status` against the cluster with `env` (None removes the
/// variable); whether it succeeded, and its output.
fn meta_status(meta: &str, env: &[(&str, Option<&Path>)]) -> (bool, String) {
    let mut cmd = Command::new(bin_path("magnetar"));
    cmd.args(["meta", "status", "--meta", meta, "--timeout", "5"]);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("magnetar meta status");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn wait_for_file(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_between_services_and_broker_failover() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("magnetar-cluster-ca");
    let ca_file = ca.write(&dir.path().join("cluster-ca.pem"));
    let (cert, key) = ca.server("magnetar-node").write(dir.path(), "node");
    // Every process the cluster starts inherits these (one test in this
    // binary: nothing else reads the environment meanwhile).
    std::env::set_var(ENV_CA, &ca_file);
    std::env::set_var(ENV_CERT, &cert);
    std::env::set_var(ENV_KEY, &key);
    std::env::set_var(ENV_MUTUAL, "true");

    let args = [
        "--lease-ttl",
        "3",
        "--load-report-interval-ms",
        "500",
        "--balancer-interval-ms",
        "0",
    ];
    let mut c = BrokerCluster::start_with(3, 3, 0, &args);
    // Each broker also serves clients over pulsar+ssl (the same CA).
    let mut tls_ports = Vec::new();
    for _ in 0..2 {
        let (tls, https) = (free_port(), free_port());
        let (c_file, k_file) = (cert.display().to_string(), key.display().to_string());
        c.add_broker(&[
            "--tls-cert-file",
            &c_file,
            "--tls-key-file",
            &k_file,
            "--tls-listen",
            &format!("127.0.0.1:{tls}"),
            "--tls-http",
            &format!("127.0.0.1:{https}"),
        ]);
        tls_ports.push((tls, https));
    }
    c.wait_ready(Duration::from_secs(90)).await;
    let meta = c.storage.meta.endpoints();

    // TLS is really on, and mutual.
    let (ok, out) = meta_status(&meta, &[]);
    assert!(ok, "with the cluster's certificate: {out}");
    let no_tls = [
        (ENV_CA, None),
        (ENV_CERT, None),
        (ENV_KEY, None),
        (ENV_MUTUAL, None),
    ];
    let (ok, out) = meta_status(&meta, &no_tls);
    assert!(!ok, "a plain client reached the metadata service: {out}");
    let no_cert = [(ENV_CERT, None), (ENV_KEY, None), (ENV_MUTUAL, None)];
    let (ok, out) = meta_status(&meta, &no_cert);
    assert!(!ok, "a client without a certificate was let in: {out}");
    let other = TestCa::new("other-ca");
    let (ocert, okey) = other.server("intruder").write(dir.path(), "intruder");
    let intruder = [
        (ENV_CERT, Some(ocert.as_path())),
        (ENV_KEY, Some(okey.as_path())),
    ];
    let (ok, out) = meta_status(&meta, &intruder);
    assert!(!ok, "a certificate from another CA was let in: {out}");

    // The official client over pulsar+ssl to the first broker reaches
    // topics the second one serves through its TLS URL (brokerServiceUrlTls).
    let spread_ns = "public/tls-spread";
    python(
        &c.all_brokers(),
        &["namespace", "--ns", spread_ns, "--bundles", "16"],
        Duration::from_secs(60),
    );
    let (tls, https) = tls_ports[0];
    let urls = Urls {
        service: format!("pulsar+ssl://localhost:{tls}"),
        web: format!("https://localhost:{https}"),
    };
    let out = Command::new(magnetar_testkit::python())
        .arg(tls_script())
        .args(["spread", spread_ns, "16"])
        .env("PULSAR_URL", urls.service_url())
        .env("PULSAR_WEB", urls.web_url())
        .env("TLS_CA", &ca_file)
        .output()
        .expect("python tls.py");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("ok spread "),
        "{text}"
    );
    let mut owners = std::collections::HashSet::new();
    for i in 0..16 {
        owners.insert(owner_of(&c, &format!("persistent://{spread_ns}/tls-spread-{i}")).await);
    }
    assert_eq!(owners.len(), 2, "the topics were not spread: {owners:?}");

    // Failover: producers on 10 topics while the broker serving most of
    // them is killed; every acknowledged message is read back.
    let ns = "public/failover-tls";
    python(
        &c.all_brokers(),
        &["namespace", "--ns", ns, "--bundles", "8"],
        Duration::from_secs(60),
    );
    let acked = dir.path().join("acked.json");
    let ready = acked.with_extension("ready");
    let (r, a) = (ready.display().to_string(), acked.display().to_string());
    let urls = c.all_brokers();
    let producing = std::thread::spawn(move || {
        let args = [
            "produce",
            "--ns",
            ns,
            "--topics",
            "10",
            "--duration",
            "12",
            "--rate",
            "20",
            "--ready",
            &r,
            "--out",
            &a,
        ];
        python(&urls, &args, Duration::from_secs(180))
    });
    wait_for_file(&ready, Duration::from_secs(90));
    let mut count: HashMap<String, usize> = HashMap::new();
    for i in 0..10 {
        let t = format!("persistent://{ns}/t-{i}");
        *count.entry(owner_of(&c, &t).await).or_default() += 1;
    }
    let (busiest, _) = count.into_iter().max_by_key(|(_, n)| *n).expect("owners");
    let victim = c
        .brokers
        .iter()
        .position(|b| b.http == busiest)
        .expect("owner is one of ours");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.brokers[victim].process.kill();
    let out = producing.join().expect("producer thread");
    assert!(out.contains("\"errors\": 0"), "{out}");
    let a = acked.display().to_string();
    let survivors: Urls = c.all_brokers_but(victim);
    python(
        &survivors,
        &["verify", "--acked", &a],
        Duration::from_secs(180),
    );
}
