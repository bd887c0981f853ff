//! A terminated topic through Magnetar's Rust client: producing fails for
//! good (no re-attach), a reader and a consumer get every message written
//! before and then "end of topic".

use std::time::Duration;

use magnetar_client::{
    Client, ClientError, ConsumerOptions, InitialPosition, MessageId, OutgoingMessage,
    ProducerOptions,
};
use magnetar_testkit::{http, PulsarService, Standalone};
use magnetar_wire::pb::ServerError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_topic_ends_readers_and_refuses_producers() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let client = Client::from_url(&s.service_url()).expect("client");
    let topic = "persistent://public/default/ending";
    let mut consumer = client
        .subscribe(
            topic,
            "sub",
            ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                ..Default::default()
            },
        )
        .await
        .expect("subscribe");
    let producer = client
        .create_producer(
            topic,
            ProducerOptions {
                batching: false,
                ..Default::default()
            },
        )
        .await
        .expect("producer");
    for i in 0..5 {
        producer
            .send(OutgoingMessage::new(format!("e{i}")))
            .await
            .expect("send");
    }
    let (code, body) = http::request(
        &s.http,
        "POST",
        "/admin/v2/persistent/public/default/ending/terminate",
        None,
        Duration::from_secs(30),
    )
    .await
    .expect("terminate");
    assert_eq!(code, 200, "{body}");

    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        producer.send(OutgoingMessage::new("late")),
    )
    .await
    .expect("a send to a terminated topic must fail, not hang");
    match refused {
        Err(e) => assert_eq!(
            e.server_error(),
            Some(ServerError::TopicTerminatedError),
            "{e}"
        ),
        Ok(id) => panic!("stored {id:?} on a terminated topic"),
    }

    for i in 0..5 {
        let m = consumer.receive().await.expect("receive");
        assert_eq!(&m.payload[..], format!("e{i}").as_bytes());
        consumer.ack(&m.id).expect("ack");
    }
    let end = tokio::time::timeout(Duration::from_secs(15), consumer.receive())
        .await
        .expect("end of topic, not a stall");
    assert!(matches!(end, Err(ClientError::EndOfTopic)), "{end:?}");
    assert!(consumer.has_reached_end_of_topic());

    let mut reader = client
        .create_reader(topic, MessageId::EARLIEST, true)
        .await
        .expect("reader");
    for i in 0..5 {
        let m = reader.next().await.expect("read");
        assert_eq!(&m.payload[..], format!("e{i}").as_bytes());
    }
    let end = tokio::time::timeout(Duration::from_secs(15), reader.next())
        .await
        .expect("end of topic, not a stall");
    assert!(matches!(end, Err(ClientError::EndOfTopic)), "{end:?}");
    client.close().await;
}
