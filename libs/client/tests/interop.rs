//! Magnetar's Rust client and the official Python client (`pulsar-client`
//! from PyPI) exchange messages through `magnetar standalone`: batches,
//! compression, keys and properties written by one are read by the other.

use std::path::PathBuf;
use std::time::Duration;

use magnetar_client::{
    Client, ConsumerOptions, InitialPosition, Message, MessageId, OutgoingMessage, ProducerOptions,
};
use magnetar_testkit::{run_python, PulsarService, Standalone};
use magnetar_wire::CompressionType;

const N: usize = 2000;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py")
}

fn python(svc: &Standalone, args: &[&str]) {
    let out = run_python(svc, &script(), args, Duration::from_secs(120));
    assert!(
        out.contains(&format!("ok {}", args[0])),
        "python {args:?}:\n{out}"
    );
}

/// The first message a new reader from `start` gets.
async fn first_read(client: &Client, topic: &str, start: MessageId, inclusive: bool) -> Message {
    let mut reader = client
        .create_reader(topic, start, inclusive)
        .await
        .expect("reader");
    let first = reader
        .next_timeout(Duration::from_secs(15))
        .await
        .expect("read")
        .expect("a message");
    reader.close().await.expect("close reader");
    first
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_and_python_clients_interoperate() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let client = Client::from_url(&s.service_url()).expect("client");

    // Rust produces (batched, LZ4), Python consumes.
    let topic = "persistent://public/default/rust-to-python";
    let producer = client
        .create_producer(
            topic,
            ProducerOptions {
                compression: CompressionType::Lz4,
                batch_max_messages: 50,
                ..Default::default()
            },
        )
        .await
        .expect("producer");
    let mut receipts = Vec::new();
    for i in 0..N {
        let msg = OutgoingMessage::new(format!("rust-{i}").into_bytes())
            .with_key(format!("k{}", i % 5))
            .with_property("i", i.to_string());
        receipts.push(producer.send_async(msg).await.expect("send"));
    }
    let mut last = None;
    for r in receipts {
        let id = r.await.expect("receipt");
        assert!(last < Some(id), "ids not increasing: {last:?} then {id}");
        last = Some(id);
    }
    producer.close().await.expect("close producer");
    python(&s, &["consume", topic, &N.to_string()]);

    // Python produces (batched, ZSTD), Rust consumes.
    let topic = "persistent://public/default/python-to-rust";
    let mut consumer = client
        .subscribe(
            topic,
            "rust",
            ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                receiver_queue: 100,
                ..Default::default()
            },
        )
        .await
        .expect("subscribe");
    python(&s, &["produce", topic, &N.to_string()]);
    let mut ids = Vec::new();
    for i in 0..N {
        let m = consumer
            .receive_timeout(Duration::from_secs(15))
            .await
            .expect("receive")
            .unwrap_or_else(|| panic!("message {i} never came"));
        assert_eq!(m.payload, format!("py-{i}").as_bytes());
        assert_eq!(m.key.as_deref(), Some(format!("k{}", i % 5).as_str()));
        assert_eq!(m.property("i"), Some(i.to_string().as_str()));
        consumer.ack(&m.id).expect("ack");
        ids.push(m.id);
    }
    assert!(consumer
        .receive_timeout(Duration::from_millis(500))
        .await
        .expect("receive")
        .is_none());
    consumer.close().await.expect("close consumer");

    // A reader starting at a message in the middle of a batch, both ways.
    let start = ids[N / 2 + 3];
    let first = first_read(&client, topic, start, false).await;
    assert_eq!(first.payload, format!("py-{}", N / 2 + 4).as_bytes());
    let first = first_read(&client, topic, start, true).await;
    assert_eq!(first.payload, format!("py-{}", N / 2 + 3).as_bytes());
    let first = first_read(&client, topic, MessageId::EARLIEST, false).await;
    assert_eq!(first.payload, &b"py-0"[..]);

    // Bad input gets a clear error, not a hang: an oversize message.
    let producer = client
        .create_producer(topic, ProducerOptions::default())
        .await
        .expect("producer");
    let big = OutgoingMessage::new(vec![0u8; 6 << 20]);
    assert!(matches!(
        producer.send(big).await,
        Err(magnetar_client::ClientError::MessageTooBig { .. })
    ));
    producer
        .send(OutgoingMessage::new(&b"still fine"[..]))
        .await
        .expect("send after an oversize message");
    client.close().await;
}
