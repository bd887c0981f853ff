//! Feeds arbitrary bytes to the frame decoder as a client connection would.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use magnetar_wire::PulsarCodec;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = PulsarCodec::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
});
