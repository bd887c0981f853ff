//! The broker cluster, as separate processes (3 metadata nodes, 3 bookies,
//! several brokers) driven by the official Python client: bundle ownership,
//! failover on SIGKILL, a broker paused past its lease, SIGTERM drain,
//! unload and split with subscriptions attached, and the balancer giving a
//! new broker its share.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use magnetar_testkit::{http, run_python, BrokerCluster, PulsarService, Urls};

/// Session lease TTL of the brokers in these tests (seconds).
const TTL: &str = "3";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/cluster.py")
}

fn python(svc: &dyn PulsarService, args: &[&str], timeout: Duration) -> String {
    let out = run_python(svc, &script(), args, timeout);
    println!("{out}");
    out
}

async fn cluster(brokers: usize, extra: &[&str]) -> BrokerCluster {
    let mut args = vec!["--lease-ttl", TTL, "--load-report-interval-ms", "500"];
    args.extend_from_slice(extra);
    let mut c = BrokerCluster::start_with(3, 3, brokers, &args);
    c.wait_ready(Duration::from_secs(90)).await;
    c
}

/// The HTTP address (`127.0.0.1:port`) of the broker serving `topic`.
async fn owner_of(c: &BrokerCluster, asked: usize, topic: &str) -> String {
    let path = format!(
        "/lookup/v2/topic/{}",
        topic.replace("persistent://", "persistent/")
    );
    let (code, body) = http::get(&c.brokers[asked].http, &path, Duration::from_secs(30))
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

/// Index of the broker that serves most of `topics`.
async fn busiest(c: &BrokerCluster, topics: &[String]) -> usize {
    let mut count: HashMap<String, usize> = HashMap::new();
    for t in topics {
        *count.entry(owner_of(c, 0, t).await).or_default() += 1;
    }
    println!("topics per broker: {count:?}");
    let (http, _) = count.into_iter().max_by_key(|(_, n)| *n).expect("owners");
    c.brokers
        .iter()
        .position(|b| b.http == http)
        .expect("owner is one of ours")
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

/// Producers running in the background (`cluster.py produce`) on `topics`
/// topics of `ns`; returns once every producer has a first acknowledged
/// message. Join the handle for the script's output; acknowledged messages
/// are listed in `acked`.
fn start_producers(
    urls: Urls,
    ns: &'static str,
    topics: usize,
    secs: u64,
    rate: u64,
    acked: &Path,
) -> std::thread::JoinHandle<String> {
    let ready = acked.with_extension("ready");
    let (r, a) = (ready.display().to_string(), acked.display().to_string());
    let handle = std::thread::spawn(move || {
        let (topics, secs, rate) = (topics.to_string(), secs.to_string(), rate.to_string());
        let args = [
            "produce",
            "--ns",
            ns,
            "--topics",
            &topics,
            "--duration",
            &secs,
            "--rate",
            &rate,
            "--ready",
            &r,
            "--out",
            &a,
        ];
        python(&urls, &args, Duration::from_secs(180))
    });
    wait_for_file(&ready, Duration::from_secs(90));
    handle
}

enum Fault {
    Kill,
    Terminate,
}

/// Producers on 20 topics while the broker owning most of them fails; then
/// every acknowledged message is read back in order.
async fn producers_survive(fault: Fault, dedup: bool) {
    let mut c = cluster(3, &["--balancer-interval-ms", "0"]).await;
    let ns = "public/failover";
    let mut setup = vec!["namespace", "--ns", ns, "--bundles", "8"];
    if dedup {
        setup.push("--dedup");
    }
    python(&c.all_brokers(), &setup, Duration::from_secs(60));
    let dir = tempfile::tempdir().expect("temp dir");
    let acked = dir.path().join("acked.json");
    let producing = start_producers(c.all_brokers(), ns, 20, 15, 20, &acked);
    let topics: Vec<String> = (0..20)
        .map(|i| format!("persistent://{ns}/t-{i}"))
        .collect();
    let victim = busiest(&c, &topics).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    match fault {
        Fault::Kill => c.brokers[victim].process.kill(),
        Fault::Terminate => {
            let code = c.brokers[victim].process.terminate(Duration::from_secs(30));
            assert_eq!(code, Some(0), "broker did not shut down cleanly");
        }
    }
    let out = producing.join().expect("producer thread");
    assert!(out.contains("\"errors\": 0"), "{out}");
    let urls = c.all_brokers_but(victim);
    let a = acked.display().to_string();
    let mut verify = vec!["verify", "--acked", &a];
    if dedup {
        verify.push("--no-duplicates");
    }
    python(&urls, &verify, Duration::from_secs(180));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_the_busiest_broker_loses_no_acknowledged_message() {
    producers_survive(Fault::Kill, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_with_deduplication_gives_no_duplicates() {
    producers_survive(Fault::Kill, true).await;
}

/// Issue 27: the broker owning a topic and a bookie die one after the other
/// (both orders, a different broker and bookie each round). With E=Qw=Qa=2 on
/// three bookies one bookie down must not make any topic unavailable: the new
/// owner fences with one bookie, reads each entry from one, and rewrites the
/// tail to the spare. Every topic must take writes again within the lease TTL
/// + 15 s (the producers' longest gap between acknowledgements), no send may
/// fail, and every acknowledged message must read back in order.
#[tokio::test(flavor = "multi_thread")]
async fn broker_and_bookie_kills_leave_every_topic_available() {
    const ROUNDS: [(&str, bool); 4] = [
        ("public/faults-0", true),
        ("public/faults-1", false),
        ("public/faults-2", true),
        ("public/faults-3", false),
    ];
    let mut c = cluster(3, &["--balancer-interval-ms", "0"]).await;
    let limit = TTL.parse::<f64>().expect("ttl") + 15.0;
    for (round, (ns, broker_first)) in ROUNDS.into_iter().enumerate() {
        let setup = ["namespace", "--ns", ns, "--bundles", "8"];
        python(&c.all_brokers(), &setup, Duration::from_secs(60));
        let dir = tempfile::tempdir().expect("temp dir");
        let acked = dir.path().join("acked.json");
        let producing = start_producers(c.all_brokers(), ns, 6, 16, 100, &acked);
        // A different broker each round, as long as it serves one of the topics.
        let mut owners = Vec::new();
        for t in 0..6 {
            let http = owner_of(&c, 0, &format!("persistent://{ns}/t-{t}")).await;
            owners.extend(c.brokers.iter().position(|b| b.http == http));
        }
        let victim = if owners.contains(&(round % c.brokers.len())) {
            round % c.brokers.len()
        } else {
            owners[0]
        };
        let bookie = round % c.storage.bookies.len();
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "round {round}: broker {victim} and bookie {bookie}, broker first: {broker_first}"
        );
        for step in 0..2 {
            if (step == 0) == broker_first {
                c.brokers[victim].process.kill();
            } else {
                c.storage.bookies[bookie].process.kill();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let out = producing.join().expect("producer thread");
        assert!(out.contains("\"errors\": 0"), "round {round}: {out}");
        let gap = out
            .rsplit("\"max_gap_s\": ")
            .next()
            .and_then(|t| t.split(['}', ',']).next())
            .and_then(|n| n.trim().parse::<f64>().ok())
            .expect("max_gap_s in the producer's summary");
        assert!(
            gap < limit,
            "round {round}: a topic took no writes for {gap} s (limit {limit} s)"
        );
        let a = acked.display().to_string();
        python(
            &c.all_brokers_but(victim),
            &["verify", "--acked", &a],
            Duration::from_secs(180),
        );
        c.brokers[victim].process.start();
        c.storage.bookies[bookie].process.start();
        c.wait_ready(Duration::from_secs(90)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_broker_without_client_errors() {
    producers_survive(Fault::Terminate, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_broker_cannot_write_to_a_moved_topic() {
    let c = cluster(2, &["--balancer-interval-ms", "0"]).await;
    python(
        &c.all_brokers(),
        &["namespace", "--ns", "public/paused"],
        Duration::from_secs(60),
    );
    let pids: Vec<String> = c
        .brokers
        .iter()
        .map(|b| b.process.pid().expect("running").to_string())
        .collect();
    let webs: Vec<String> = c
        .brokers
        .iter()
        .map(|b| format!("http://{}", b.http))
        .collect();
    let (pids, webs) = (pids.join(","), webs.join(","));
    python(
        &c.all_brokers(),
        &[
            "paused",
            "--ns",
            "public/paused",
            "--pids",
            &pids,
            "--webs",
            &webs,
            "--ttl",
            TTL,
        ],
        Duration::from_secs(180),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unload_and_split_keep_failover_and_key_shared_guarantees() {
    let c = cluster(2, &["--balancer-interval-ms", "0"]).await;
    python(
        &c.all_brokers(),
        &["namespace", "--ns", "public/move"],
        Duration::from_secs(60),
    );
    python(
        &c.all_brokers(),
        &["move", "--ns", "public/move"],
        Duration::from_secs(180),
    );
}

/// Bundles each broker owns, by HTTP address.
async fn bundles_per_broker(c: &BrokerCluster) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for b in &c.brokers {
        let path = format!("/admin/v2/brokers/standalone/{}/ownedNamespaces", b.http);
        let (code, body) = http::get(&c.brokers[0].http, &path, Duration::from_secs(10))
            .await
            .expect("ownedNamespaces");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        out.insert(b.http.clone(), v.as_object().map_or(0, |m| m.len()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_balancer_gives_a_new_broker_bundles() {
    let mut c = cluster(1, &["--balancer-interval-ms", "1000"]).await;
    let ns = "public/balance";
    python(
        &c.all_brokers(),
        &["namespace", "--ns", ns, "--bundles", "16"],
        Duration::from_secs(60),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let acked = dir.path().join("acked.json");
    // Producers (on every topic, so on every bundle) keep running while the
    // balancer moves bundles; they must see no errors.
    let urls = Urls {
        service: format!("pulsar://{}", c.brokers[0].addr),
        web: format!("http://{}", c.brokers[0].http),
    };
    let producing = start_producers(urls, ns, 48, 30, 5, &acked);
    // 48 topics hash into most of the 16 bundles.
    let before = bundles_per_broker(&c).await;
    let owned: usize = before.values().sum();
    assert!(owned >= 10, "{before:?}");
    let fair_share = (owned - 1) / 2;
    c.add_broker(&[]);
    c.wait_ready(Duration::from_secs(60)).await;
    let newcomer = c.brokers[1].http.clone();
    let deadline = Instant::now() + Duration::from_secs(25);
    let spread = loop {
        let now = bundles_per_broker(&c).await;
        if now.get(&newcomer).copied().unwrap_or(0) >= fair_share {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "new broker got too few bundles: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("bundles per broker: {spread:?}");
    let out = producing.join().expect("producer thread");
    assert!(out.contains("\"errors\": 0"), "{out}");
    let a = acked.display().to_string();
    python(
        &c.all_brokers(),
        &["verify", "--acked", &a],
        Duration::from_secs(180),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_answer_the_advertised_listener_a_client_names() {
    let mut c = BrokerCluster::start(1, 1, 0);
    let port = magnetar_testkit::free_port();
    let external = format!("external:pulsar://127.0.0.1:{port}");
    c.add_broker_on(
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{}", magnetar_testkit::free_port()),
        &["--advertised-listeners", &external],
    );
    c.wait_ready(Duration::from_secs(60)).await;
    python(
        &c.all_brokers(),
        &["listeners", "--listener", "external"],
        Duration::from_secs(120),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_past_its_topic_threshold_is_split() {
    let c = cluster(
        2,
        &["--balancer-interval-ms", "1000", "--split-max-topics", "4"],
    )
    .await;
    let ns = "public/split";
    python(
        &c.all_brokers(),
        &["namespace", "--ns", ns, "--bundles", "1"],
        Duration::from_secs(60),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let acked = dir.path().join("acked.json");
    let a = acked.display().to_string();
    // 12 topics in one bundle, producing while the leader splits it (the
    // halves are placed anew, so producers move too).
    python(
        &c.all_brokers(),
        &[
            "produce",
            "--ns",
            ns,
            "--topics",
            "12",
            "--duration",
            "12",
            "--rate",
            "5",
            "--out",
            &a,
        ],
        Duration::from_secs(180),
    );
    let path = format!("/admin/v2/namespaces/{ns}/bundles");
    let (code, body) = http::get(&c.brokers[0].http, &path, Duration::from_secs(10))
        .await
        .expect("bundles");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let n = v["numBundles"].as_u64().unwrap_or(0);
    assert!(n >= 2, "the bundle was not split: {body}");
    python(
        &c.all_brokers(),
        &["verify", "--acked", &a],
        Duration::from_secs(180),
    );
}
