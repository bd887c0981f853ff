//! Records a history of reads, writes and CAS from concurrent clients on a few
//! keys while a nemesis kills and pauses nodes, then checks each key's history
//! with the Wing & Gong / Porcupine-style checker in libs/testkit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use magnetar_meta_client::{ClientConfig, Error, MetaClient, PutOptions};
use magnetar_testkit::linearizability::{
    check, Operation, RegisterInput, RegisterOutput, VersionedRegister,
};
use magnetar_testkit::MetaCluster;
use rand::Rng;

const KEYS: usize = 3;
const CLIENTS: usize = 6;

type History = Vec<Operation<RegisterInput, RegisterOutput>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_history_is_linearizable_under_kills_and_pauses() {
    let mut cluster = MetaCluster::start(3);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = cluster.endpoints();
    let epoch = Instant::now();
    let histories: Arc<Vec<Mutex<History>>> =
        Arc::new((0..KEYS).map(|_| Mutex::new(Vec::new())).collect());
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for w in 0..CLIENTS {
        let mut cfg = ClientConfig::from_list(&endpoints);
        cfg.request_timeout = Duration::from_secs(1);
        // Spread first contacts over the nodes so redirects are exercised too.
        cfg.endpoints.rotate_left(w % 3);
        cfg.operation_timeout = Duration::from_secs(3);
        let c = MetaClient::new(cfg).unwrap();
        let (histories, stop) = (histories.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (k, kind, value, guess) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(0..KEYS),
                        rng.random_range(0..3u8),
                        (w as i64) * 1_000_000 + n,
                        rng.random_range(0..4i64),
                    )
                };
                let key = format!("reg/{k}");
                let call = epoch.elapsed().as_nanos() as u64;
                let (input, output) = match kind {
                    0 => {
                        let r = c.get(&key).await;
                        let out = match r {
                            Ok(Some(kv)) => RegisterOutput::Read(
                                Some(std::str::from_utf8(&kv.value).unwrap().parse().unwrap()),
                                kv.version,
                            ),
                            Ok(None) => RegisterOutput::Read(None, 0),
                            Err(e) if e.is_indeterminate() => continue, // a failed read has no effect
                            Err(e) => panic!("read: {e}"),
                        };
                        (RegisterInput::Read, out)
                    }
                    1 => {
                        let out = match c.put(&key, value.to_string()).await {
                            Ok(_) => RegisterOutput::Written,
                            Err(e) if e.is_indeterminate() => RegisterOutput::Unknown,
                            Err(e) => panic!("write: {e}"),
                        };
                        (RegisterInput::Write(value), out)
                    }
                    _ => {
                        let opts = PutOptions {
                            expected_version: Some(guess),
                            lease: 0,
                        };
                        let out = match c.put_with(&key, value.to_string(), opts).await {
                            Ok(_) => RegisterOutput::Cas(true),
                            Err(Error::VersionMismatch { .. }) => RegisterOutput::Cas(false),
                            Err(e) if e.is_indeterminate() => RegisterOutput::Unknown,
                            Err(e) => panic!("cas: {e}"),
                        };
                        (
                            RegisterInput::Cas {
                                expected_version: guess,
                                new: value,
                            },
                            out,
                        )
                    }
                };
                let ret = if output == RegisterOutput::Unknown {
                    u64::MAX
                } else {
                    epoch.elapsed().as_nanos() as u64
                };
                histories[k].lock().unwrap().push(Operation {
                    call,
                    ret,
                    input,
                    output,
                });
            }
        }));
    }

    // The nemesis: leader kills, a paused follower, a paused leader.
    let pause = |d| tokio::time::sleep(Duration::from_millis(d));
    pause(1500).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.kill(leader);
    pause(1500).await;
    cluster.start_node(leader);
    pause(1500).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    cluster.pause(follower);
    pause(1500).await;
    cluster.resume(follower);
    pause(1000).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.pause(leader);
    pause(2500).await;
    cluster.resume(leader);
    pause(2000).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    for (k, h) in histories.iter().enumerate() {
        let h = h.lock().unwrap();
        let unknown = h
            .iter()
            .filter(|o| o.output == RegisterOutput::Unknown)
            .count();
        eprintln!(
            "key {k}: {} operations ({unknown} with unknown outcome)",
            h.len()
        );
        assert!(
            h.len() >= 30,
            "too little history on key {k} to mean anything"
        );
        let started = Instant::now();
        if !check(&VersionedRegister, &h) {
            if std::env::var_os("MAGNETAR_DUMP_HISTORY").is_some() {
                eprintln!("{:#?}", *h);
            }
            panic!("history of key {k} ({} ops) is not linearizable; MAGNETAR_DUMP_HISTORY=1 prints it", h.len());
        }
        eprintln!("key {k}: checked in {:?}", started.elapsed());
    }
}
