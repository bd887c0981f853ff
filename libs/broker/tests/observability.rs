//! Per-topic Prometheus metrics (Pulsar's names, write-latency histogram,
//! subscription backlog, the cardinality limit) and OpenTelemetry spans for
//! publish and dispatch, exported over OTLP to a collector this test runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use magnetar_client::{Client, ConsumerOptions, InitialPosition, OutgoingMessage, ProducerOptions};
use magnetar_testkit::{free_port, http, Standalone};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;

/// Span name → its attributes, as received.
type Spans = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

struct Collector(Spans);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attrs = s
                        .attributes
                        .iter()
                        .map(|kv| {
                            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(AnyValue::StringValue(s)) => s.clone(),
                                Some(AnyValue::IntValue(i)) => i.to_string(),
                                Some(other) => format!("{other:?}"),
                                None => String::new(),
                            };
                            (kv.key.clone(), v)
                        })
                        .collect();
                    spans.push((s.name, attrs));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn scrape(s: &Standalone) -> String {
    let (code, body) = http::get(&s.http, "/metrics", Duration::from_secs(10))
        .await
        .expect("scrape");
    assert_eq!(code, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_metrics_and_spans() {
    let spans: Spans = Arc::default();
    let port = free_port();
    let collector = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Collector(spans.clone())))
        .serve(format!("127.0.0.1:{port}").parse().unwrap());
    tokio::spawn(collector);
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut s = Standalone::start_with(&["--otlp-endpoint", &endpoint, "--max-topic-metrics", "2"]);
    s.wait_ready(Duration::from_secs(60)).await;

    let client = Client::from_url(&format!("pulsar://{}", s.broker)).unwrap();
    let topic = "persistent://public/default/observed";
    let mut consumer = client
        .subscribe(
            topic,
            "watcher",
            ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let producer = client
        .create_producer(topic, ProducerOptions::default())
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .send(OutgoingMessage::new(format!("m{i}")))
            .await
            .unwrap();
    }
    for _ in 0..4 {
        let m = consumer.receive().await.unwrap();
        consumer.ack(&m.id).unwrap();
    }

    // Metrics: one topic, labelled per topic, with Pulsar's names.
    let labels = "cluster=\"standalone\",namespace=\"public/default\",topic=\"persistent://public/default/observed\"";
    let text = scrape(&s).await;
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    assert_eq!(
        value(&text, &format!("pulsar_in_messages_total{{{labels}}}")),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("pulsar_storage_write_latency_count{{{labels}}}")
        ),
        Some(10.0),
        "{text}"
    );
    let in_buckets: f64 = text
        .lines()
        .filter(|l| l.starts_with("pulsar_storage_write_latency_le_") && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(in_buckets, 10.0, "every write lands in one bucket:\n{text}");
    let backlog = format!("pulsar_subscription_back_log{{{labels},subscription=\"watcher\"}}");
    let mut last = None;
    for _ in 0..50 {
        last = value(&scrape(&s).await, &backlog);
        if last == Some(6.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, Some(6.0), "subscription backlog");
    assert_eq!(value(&text, "magnetar_topic_metrics_aggregated"), Some(0.0));

    // Past --max-topic-metrics the series are per namespace only.
    for name in ["observed-2", "observed-3"] {
        let p = client
            .create_producer(
                &format!("persistent://public/default/{name}"),
                ProducerOptions::default(),
            )
            .await
            .unwrap();
        p.send(OutgoingMessage::new("x")).await.unwrap();
    }
    let text = scrape(&s).await;
    assert_eq!(value(&text, "magnetar_topic_metrics_aggregated"), Some(1.0));
    assert!(
        !text.contains("topic=\""),
        "per-topic series past the limit:\n{text}"
    );
    assert_eq!(
        value(
            &text,
            "pulsar_in_messages_total{cluster=\"standalone\",namespace=\"public/default\"}"
        ),
        Some(12.0),
        "{text}"
    );

    // Spans: a publish per message sent, a dispatch per message delivered,
    // with the topic and the subscription.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (publish, dispatch) = {
            let spans = spans.lock().unwrap();
            let publish = spans
                .iter()
                .filter(|(n, a)| n == "publish" && attr(a, "topic") == Some(topic))
                .count();
            let dispatch = spans
                .iter()
                .filter(|(n, a)| {
                    n == "dispatch"
                        && attr(a, "subscription") == Some("watcher")
                        && attr(a, "topic").is_some_and(|t| t.contains("observed"))
                })
                .count();
            (publish, dispatch)
        };
        if publish >= 10 && dispatch >= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans: {publish} publish, {dispatch} dispatch; got {:?}",
            spans
                .lock()
                .unwrap()
                .iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.close().await;
}
