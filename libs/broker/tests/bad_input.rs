//! Malformed input on the binary protocol closes only the offending
//! connection, with an ERROR first; other clients carry on.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::{SinkExt, StreamExt};
use magnetar_testkit::Standalone;
use magnetar_wire::{pb, BaseCommand, CommandType, Frame, PulsarCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

fn connect_cmd() -> BaseCommand {
    pb::CommandConnect {
        client_version: "bad-input-test".into(),
        protocol_version: Some(21),
        ..Default::default()
    }
    .into()
}

async fn framed(addr: &str) -> Framed<TcpStream, PulsarCodec> {
    let s = TcpStream::connect(addr).await.expect("connect");
    Framed::new(s, PulsarCodec::new(8 << 20))
}

async fn next(f: &mut Framed<TcpStream, PulsarCodec>) -> Option<Frame> {
    match tokio::time::timeout(Duration::from_secs(10), f.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(_) => None,
        Err(_) => panic!("no answer within 10 s"),
    }
}

/// Sends raw bytes and returns the commands received until the broker closes.
async fn send_raw_expect_close(addr: &str, connect_first: bool, raw: &[u8]) -> Vec<CommandType> {
    let mut f = framed(addr).await;
    if connect_first {
        f.send(Frame {
            command: connect_cmd(),
            payload: None,
        })
        .await
        .expect("send");
        let c = next(&mut f).await.expect("CONNECTED");
        assert_eq!(c.command.r#type(), CommandType::Connected);
    }
    let mut s = f.into_inner();
    s.write_all(raw).await.expect("write");
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection not closed after bad input");
    let mut codec_buf = BytesMut::from(&buf[..]);
    let mut codec = PulsarCodec::new(8 << 20);
    use tokio_util::codec::Decoder;
    while let Ok(Some(frame)) = codec.decode(&mut codec_buf) {
        got.push(frame.command.r#type());
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_close_only_their_connection() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let addr = s.broker.clone();

    // A healthy client connected throughout.
    let mut healthy = framed(&addr).await;
    healthy
        .send(Frame {
            command: connect_cmd(),
            payload: None,
        })
        .await
        .unwrap();
    assert_eq!(
        next(&mut healthy).await.unwrap().command.r#type(),
        CommandType::Connected
    );

    // 1. A size far beyond the limit.
    let got = send_raw_expect_close(&addr, true, &[0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1]).await;
    assert_eq!(got, vec![CommandType::Error], "oversize frame");

    // 2. Garbage where the command should be.
    let mut raw = BytesMut::new();
    raw.put_u32(12);
    raw.put_u32(8);
    raw.put_slice(&[0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef]);
    let got = send_raw_expect_close(&addr, true, &raw).await;
    assert_eq!(got, vec![CommandType::Error], "garbage command");

    // 3. A command other than CONNECT first.
    let mut raw = BytesMut::new();
    magnetar_wire::encode_frame(&BaseCommand::from(pb::CommandPing {}), None, &mut raw);
    let got = send_raw_expect_close(&addr, false, &raw).await;
    assert_eq!(got, vec![CommandType::Error], "command before CONNECT");

    // 4. A SEND whose payload checksum is wrong.
    let payload = magnetar_wire::Payload::new(
        pb::MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 0,
            publish_time: 1,
            ..Default::default()
        },
        bytes::Bytes::from_static(b"hello"),
    );
    let mut raw = BytesMut::new();
    let send = BaseCommand::from(pb::CommandSend {
        producer_id: 1,
        sequence_id: 0,
        ..Default::default()
    });
    magnetar_wire::encode_frame(&send, Some(&payload), &mut raw);
    let last = raw.len() - 1;
    raw[last] ^= 0xff;
    let got = send_raw_expect_close(&addr, true, &raw).await;
    assert_eq!(got, vec![CommandType::Error], "bad checksum");

    // The healthy connection still answers.
    healthy
        .send(Frame {
            command: pb::CommandPing {}.into(),
            payload: None,
        })
        .await
        .unwrap();
    loop {
        let f = next(&mut healthy).await.expect("healthy connection closed");
        if f.command.r#type() == CommandType::Pong {
            break;
        }
    }
}
