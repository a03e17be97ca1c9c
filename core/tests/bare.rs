//! The unreplicated baseline: same frames, authentication and exactly-once as a replica.

#![allow(clippy::unwrap_used)]

use bft_core::app::ChainApp;
use bft_core::bare::BareServer;
use bft_core::client::{Client, ClientAuth, ClientOutput};
use bft_core::crypto::{Peer, SimCrypto};
use bft_core::time::{Span, Time};

const MASTER: [u8; 32] = [9; 32];

#[test]
fn the_bare_server_executes_once_answers_retransmissions_and_drops_forgeries() {
    let mut server = BareServer::new(
        Box::new(SimCrypto::new(Peer::Replica(0), MASTER, 1)),
        Box::new(ChainApp::default()),
    );
    let mut client = Client::new(
        5,
        1,
        Box::new(SimCrypto::new(Peer::Client(5), MASTER, 1)),
        ClientAuth::Macs,
        Span::from_millis(10),
    );
    client.submit(Time(1), b"op".to_vec());
    let Some(ClientOutput::Send { frame, .. }) = client.poll_output() else {
        panic!()
    };
    server.handle_message(&frame);
    server.handle_message(&frame); // a retransmission
    assert_eq!(server.stats().requests_executed, 1);
    let (to, reply) = server.poll_output().unwrap();
    assert_eq!(to, Peer::Client(5));
    assert!(
        server.poll_output().is_some(),
        "the retransmission is answered from the table"
    );
    client.handle_message(Time(2), &reply);
    assert!(
        matches!(
            client.poll_output(),
            Some(ClientOutput::Complete { seq: 1, .. })
        ),
        "one reply is a quorum when n = 1"
    );
    // A forged request (another client's MAC key) is dropped.
    let mut other = Client::new(
        6,
        1,
        Box::new(SimCrypto::new(Peer::Client(6), [1; 32], 1)),
        ClientAuth::Macs,
        Span::from_millis(10),
    );
    other.submit(Time(3), b"x".to_vec());
    let Some(ClientOutput::Send { frame, .. }) = other.poll_output() else {
        panic!()
    };
    server.handle_message(&frame);
    assert_eq!(server.stats().dropped_bad_auth, 1);
    server.handle_message(b"\x07garbage");
    assert_eq!(server.stats().dropped_undecodable, 1);
    assert_eq!(server.stats().requests_executed, 1);
}
