//! The `TxnStream` call on the wire, below the client library: pipelined
//! transactions on one stream to real `magnetar-meta` processes, answers
//! matched by id, bad requests answered without disturbing the others, and a
//! follower naming the leader.

use std::collections::HashMap;
use std::time::Duration;

use magnetar_proto::meta as pb;
use magnetar_proto::meta::meta_client::MetaClient as RpcClient;
use magnetar_testkit::MetaCluster;
use tokio::sync::mpsc;
use tonic::Code;

fn put(key: &str, value: &str, expected_version: Option<i64>) -> pb::TxnRequest {
    pb::TxnRequest {
        compares: expected_version
            .map(|v| pb::Compare {
                key: key.as_bytes().to_vec().into(),
                op: pb::compare::Op::Equal as i32,
                version: v,
            })
            .into_iter()
            .collect(),
        success: vec![pb::Op {
            op: Some(pb::op::Op::Put(pb::PutOp {
                key: key.as_bytes().to_vec().into(),
                value: value.as_bytes().to_vec().into(),
                lease: 0,
            })),
        }],
        ..Default::default()
    }
}

/// Sends every request on one stream to `addr` without waiting for answers,
/// then collects one answer per request.
async fn exchange(
    addr: &str,
    requests: Vec<pb::TxnStreamRequest>,
) -> HashMap<u64, pb::TxnStreamResponse> {
    let mut client = RpcClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(requests.len().max(1));
    let n = requests.len();
    for r in requests {
        tx.send(r).await.unwrap();
    }
    let mut answers = client
        .txn_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("open the stream")
        .into_inner();
    let mut by_id = HashMap::new();
    while by_id.len() < n {
        let a = tokio::time::timeout(Duration::from_secs(10), answers.message())
            .await
            .expect("an answer within 10 s")
            .expect("stream intact")
            .expect("stream still open");
        assert!(by_id.insert(a.id, a).is_none(), "answered twice");
    }
    by_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_transactions_are_answered_by_id_and_bad_ones_alone_fail() {
    let cluster = MetaCluster::start(3);
    let leader = cluster
        .wait_for_leader_known_to_all(Duration::from_secs(30))
        .await;
    let addr_of = |id: u64| {
        cluster
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.clone())
            .unwrap()
    };
    let leader_addr = addr_of(leader);
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id;

    // A follower answers with the leader's address and applies nothing.
    let answers = exchange(
        &addr_of(follower),
        vec![pb::TxnStreamRequest {
            id: 7,
            txn: Some(put("elsewhere", "v", None)),
        }],
    )
    .await;
    assert_eq!(
        answers[&7].code,
        Code::Unavailable as i32,
        "{:?}",
        answers[&7]
    );
    assert_eq!(answers[&7].leader_addr, leader_addr);
    assert!(answers[&7].txn.is_none());

    let answers = exchange(
        &leader_addr,
        vec![
            pb::TxnStreamRequest {
                id: 1,
                txn: Some(put("a", "1", Some(0))),
            },
            pb::TxnStreamRequest { id: 2, txn: None },
            pb::TxnStreamRequest {
                id: 3,
                txn: Some(put(&"k".repeat(5000), "v", None)),
            },
            pb::TxnStreamRequest {
                id: 4,
                txn: Some(put("b", "1", None)),
            },
            pb::TxnStreamRequest {
                id: 5,
                txn: Some(put("b", "2", Some(99))),
            },
        ],
    )
    .await;
    let applied = |id: u64| {
        let a = &answers[&id];
        assert_eq!(a.code, 0, "request {id}: {a:?}");
        a.txn.clone().unwrap()
    };
    assert!(applied(1).succeeded);
    assert_eq!(answers[&2].code, Code::InvalidArgument as i32);
    assert!(
        answers[&2].message.contains("no transaction"),
        "{:?}",
        answers[&2]
    );
    assert_eq!(answers[&3].code, Code::InvalidArgument as i32);
    assert!(
        answers[&3].message.contains("limit is 4096"),
        "{:?}",
        answers[&3]
    );
    assert!(applied(4).succeeded);
    let cas_miss = applied(5);
    assert!(!cas_miss.succeeded, "CAS at version 99 must not hold");
    assert_eq!(cas_miss.compare_versions, vec![1]);

    // What the stream applied is what a plain read sees: one version each,
    // nothing from the rejected requests or the follower.
    let mut client = RpcClient::connect(format!("http://{leader_addr}"))
        .await
        .unwrap();
    for (key, value) in [("a", Some("1")), ("b", Some("1")), ("elsewhere", None)] {
        let got = client
            .get(pb::GetRequest {
                key: key.as_bytes().to_vec().into(),
                serializable: false,
            })
            .await
            .unwrap()
            .into_inner()
            .kv;
        assert_eq!(
            got.as_ref().map(|kv| kv.value.as_ref()),
            value.map(str::as_bytes),
            "{key}"
        );
        if let Some(kv) = got {
            assert_eq!(kv.version, 1, "{key}");
        }
    }
}
