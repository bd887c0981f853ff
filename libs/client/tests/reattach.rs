//! A producer, a consumer and a reader of Magnetar's Rust client keep going
//! while the topic is unloaded again and again (the broker closes them each
//! time): every send succeeds, the consumer gets every message (unacked ones
//! may come twice), the reader gets each exactly once and in order. And a
//! producer that never pauses stores each message once across many unloads.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use magnetar_client::{
    Client, ConsumerOptions, InitialPosition, Message, MessageId, OutgoingMessage, ProducerOptions,
};
use magnetar_testkit::{http, PulsarService, Standalone};

const N: usize = 600;

/// Unloads `public/default/{topic}` through the admin API.
async fn unload(web: &str, topic: &str) {
    let (code, body) = http::request(
        web,
        "PUT",
        &format!("/admin/v2/persistent/public/default/{topic}/unload"),
        None,
        Duration::from_secs(10),
    )
    .await
    .expect("unload");
    assert_eq!(code, 204, "{body}");
}

/// The number a test message carries.
fn number(m: &Message) -> usize {
    std::str::from_utf8(&m.payload).unwrap().parse().unwrap()
}

/// Fails unless `read` holds 0, 1, 2, ... in order. The ids around the
/// first mismatch tell a message stored twice (another entry) from one
/// delivered twice (the same entry).
fn assert_in_order(read: &[(usize, MessageId)], what: &str) {
    if let Some(at) = read.iter().enumerate().position(|(k, (i, _))| *i != k) {
        let around = &read[at.saturating_sub(12)..(at + 12).min(read.len())];
        panic!(
            "{what}: message {at} is {}; around it: {around:?}",
            read[at].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_consumers_and_readers_survive_unloads() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let client = Client::from_url(&s.service_url()).expect("client");
    let topic = "persistent://public/default/moving";
    let mut consumer = client
        .subscribe(
            topic,
            "sub",
            ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                receiver_queue: 50,
                ..Default::default()
            },
        )
        .await
        .expect("subscribe");
    let mut reader = client
        .create_reader(topic, MessageId::EARLIEST, true)
        .await
        .expect("reader");
    let producer = client
        .create_producer(
            topic,
            ProducerOptions {
                batch_max_messages: 10,
                max_pending: 100,
                ..Default::default()
            },
        )
        .await
        .expect("producer");

    // Unload the topic every 300 ms while everything runs.
    let web = s.http.clone();
    let unloads = tokio::spawn(async move {
        let mut done = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            unload(&web, "moving").await;
            done += 1;
        }
        done
    });

    let sender = tokio::spawn(async move {
        let mut receipts = Vec::new();
        for i in 0..N {
            let f = producer
                .send_async(OutgoingMessage::new(i.to_string()))
                .await
                .expect("queue a send");
            receipts.push(f);
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (i, f) in receipts.into_iter().enumerate() {
            f.await.unwrap_or_else(|e| panic!("send {i} failed: {e}"));
        }
        producer.close().await.expect("close producer");
    });

    let mut seen = BTreeSet::new();
    while seen.len() < N {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.receive())
            .await
            .expect("consumer stalled")
            .expect("receive");
        seen.insert(number(&m));
        consumer.ack(&m.id).ok();
    }
    let mut read = Vec::new();
    while read.len() < N {
        let m = tokio::time::timeout(Duration::from_secs(60), reader.next())
            .await
            .expect("reader stalled")
            .expect("read");
        read.push((number(&m), m.id));
    }
    sender.await.expect("sender");
    assert_eq!(unloads.await.expect("unloads"), 5);
    assert_in_order(&read, "reader order");
    assert!(
        reader
            .next_timeout(Duration::from_millis(500))
            .await
            .expect("read")
            .is_none(),
        "reader got a message twice"
    );
    client.close().await;
}

/// A producer that never pauses while its topic is unloaded over and over:
/// every unload lands while sends are in flight, so a send whose append
/// starts just as the topic closes is common here. Without deduplication
/// the topic must still hold each message once: an unload answers what it
/// stored (the receipt comes before CLOSE_PRODUCER) and stores nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unloads_under_a_steady_stream_store_each_message_once() {
    const UNLOADS: usize = 15;
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let client = Client::from_url(&s.service_url()).expect("client");
    let topic = "persistent://public/default/steady";
    let producer = client
        .create_producer(
            topic,
            ProducerOptions {
                batch_max_messages: 4,
                max_pending: 200,
                ..Default::default()
            },
        )
        .await
        .expect("producer");
    let unloading = Arc::new(AtomicBool::new(true));
    let sending = unloading.clone();
    // Sends until the unloads are over; how many it sent.
    let sender = tokio::spawn(async move {
        let mut receipts = Vec::new();
        while sending.load(Ordering::Relaxed) && receipts.len() < 200_000 {
            let i = receipts.len();
            let f = producer
                .send_async(OutgoingMessage::new(i.to_string()))
                .await
                .expect("queue a send");
            receipts.push(f);
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let sent = receipts.len();
        for (i, f) in receipts.into_iter().enumerate() {
            f.await.unwrap_or_else(|e| panic!("send {i} failed: {e}"));
        }
        producer.close().await.expect("close producer");
        sent
    });
    for _ in 0..UNLOADS {
        tokio::time::sleep(Duration::from_millis(60)).await;
        unload(&s.http, "steady").await;
    }
    unloading.store(false, Ordering::Relaxed);
    let sent = sender.await.expect("sender");
    let mut reader = client
        .create_reader(topic, MessageId::EARLIEST, true)
        .await
        .expect("reader");
    let mut read = Vec::with_capacity(sent);
    while let Some(m) = reader
        .next_timeout(Duration::from_secs(5))
        .await
        .expect("read")
    {
        read.push((number(&m), m.id));
    }
    assert_in_order(&read, &format!("{sent} sent"));
    assert_eq!(read.len(), sent);
    client.close().await;
}
