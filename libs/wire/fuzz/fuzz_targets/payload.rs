//! Arbitrary bytes as a stored entry / SEND payload, then as a batch inside it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use magnetar_wire::{batch, Payload};

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = Payload::parse(Bytes::copy_from_slice(data)) {
        let _ = batch::messages_of(&payload);
    }
});
