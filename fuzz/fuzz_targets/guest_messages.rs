//! The host's reading of the control channel: any byte stream a guest
//! sends is split into frames and decoded into messages without panicking,
//! and every decoded message survives an encode/decode round trip.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use vmbuild_proto::{GuestMessage, Message};

fuzz_target!(|data: &[u8]| {
    let mut cur = Cursor::new(data);
    while let Ok(Some(msg)) = GuestMessage::read_from(&mut cur) {
        let mut buf = Vec::new();
        msg.write_to(&mut buf).expect("a decoded message encodes");
        let again = GuestMessage::read_from(&mut Cursor::new(&buf))
            .expect("its encoding decodes")
            .expect("to one message");
        assert_eq!(again, msg);
    }
});
