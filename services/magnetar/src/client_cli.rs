//! `magnetar produce` and `magnetar consume`: send and receive messages on
//! any Pulsar-protocol broker from the command line.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use magnetar_client::{
    Client, ConsumerOptions, InitialPosition, OutgoingMessage, ProducerOptions, SubscriptionType,
};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic, e.g. `my-topic` or `persistent://public/default/my-topic`.
    topic: String,
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    url: String,
    /// Token for a broker with authentication on.
    #[arg(long, env = "MAGNETAR_TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Message bodies; each is sent `--num` times.
    #[arg(short, long = "message", required = true)]
    messages: Vec<String>,
    #[arg(short, long, default_value_t = 1)]
    num: usize,
    #[arg(short, long)]
    key: Option<String>,
    /// `name=value`, repeatable.
    #[arg(short, long = "property")]
    properties: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SubType {
    Exclusive,
    Shared,
    Failover,
    KeyShared,
}

impl From<SubType> for SubscriptionType {
    fn from(t: SubType) -> Self {
        match t {
            SubType::Exclusive => SubscriptionType::Exclusive,
            SubType::Shared => SubscriptionType::Shared,
            SubType::Failover => SubscriptionType::Failover,
            SubType::KeyShared => SubscriptionType::KeyShared,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Position {
    Earliest,
    Latest,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    url: String,
    /// Token for a broker with authentication on.
    #[arg(long, env = "MAGNETAR_TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    #[arg(short, long, default_value = "magnetar-cli")]
    subscription: String,
    #[arg(short = 't', long = "type", value_enum, default_value = "exclusive")]
    sub_type: SubType,
    #[arg(short, long, value_enum, default_value = "latest")]
    position: Position,
    /// Stop after this many messages (0 = run until interrupted).
    #[arg(short, long, default_value_t = 1)]
    num: usize,
    /// Give up when nothing arrives for this many seconds (0 = wait forever).
    #[arg(long, default_value_t = 0)]
    timeout_secs: u64,
}

pub async fn produce(args: ProduceArgs) -> ExitCode {
    report(produce_inner(args).await)
}

pub async fn consume(args: ConsumeArgs) -> ExitCode {
    report(consume_inner(args).await)
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn produce_inner(args: ProduceArgs) -> anyhow::Result<()> {
    let properties = args
        .properties
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("property {p:?} is not name=value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = crate::client_cli::connect(&args.url, args.token.clone(), &args.tls)?;
    let producer = client
        .create_producer(&args.topic, ProducerOptions::default())
        .await
        .context("creating the producer")?;
    let mut receipts = Vec::new();
    for _ in 0..args.num {
        for body in &args.messages {
            let mut msg = OutgoingMessage::new(body.clone().into_bytes());
            msg.key = args.key.clone();
            msg.properties = properties.clone();
            receipts.push(producer.send_async(msg).await?);
        }
    }
    for r in receipts {
        println!("{}", r.await.context("sending")?);
    }
    producer.close().await?;
    client.close().await;
    Ok(())
}

async fn consume_inner(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = crate::client_cli::connect(&args.url, args.token.clone(), &args.tls)?;
    let opts = ConsumerOptions {
        subscription_type: args.sub_type.into(),
        initial_position: match args.position {
            Position::Earliest => InitialPosition::Earliest,
            Position::Latest => InitialPosition::Latest,
        },
        ..Default::default()
    };
    let mut consumer = client
        .subscribe(&args.topic, &args.subscription, opts)
        .await
        .context("subscribing")?;
    let mut got = 0;
    while args.num == 0 || got < args.num {
        let m = if args.timeout_secs > 0 {
            match consumer
                .receive_timeout(Duration::from_secs(args.timeout_secs))
                .await?
            {
                Some(m) => m,
                None => anyhow::bail!("no message within {}s ({got} received)", args.timeout_secs),
            }
        } else {
            consumer.receive().await?
        };
        let key = m
            .key
            .as_deref()
            .map(|k| format!(" key={k}"))
            .unwrap_or_default();
        let props: String = m
            .properties
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect();
        println!(
            "{} {}{key}{props}",
            m.id,
            String::from_utf8_lossy(&m.payload)
        );
        consumer.ack(&m.id)?;
        got += 1;
    }
    consumer.close().await?;
    client.close().await;
    Ok(())
}

/// TLS for a `pulsar+ssl://` (or `https://`) URL.
#[derive(Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// CA certificates (PEM) the broker's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, env = "MAGNETAR_TLS_TRUST_CERTS")]
    pub tls_trust_certs: Option<std::path::PathBuf>,
    /// A client certificate (PEM), for mutual TLS and TLS authentication
    /// (its subject CN is the role when no token is given).
    #[arg(long, env = "MAGNETAR_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "MAGNETAR_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl TlsArgs {
    pub fn config(&self) -> magnetar_tls::ClientTlsConfig {
        magnetar_tls::ClientTlsConfig {
            trust_file: self.tls_trust_certs.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
        }
    }
}

/// A client for `url`, presenting `token` if given.
pub fn connect(url: &str, token: Option<String>, tls: &TlsArgs) -> magnetar_client::Result<Client> {
    let mut cfg = magnetar_client::ClientConfig::new(url);
    cfg.auth_token = token;
    cfg.tls = tls.config();
    Client::new(cfg)
}
