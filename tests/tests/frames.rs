//! Malformed input on the socket (§8): a clear error or a closed connection,
//! and the daemon goes on serving everyone else.

use sc_protocol::{ErrorKind, PROTOCOL_VERSION, Request, Response};
use sc_tests::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

/// The daemon still serves normal clients.
#[track_caller]
fn still_serving(d: &TestDaemon) {
    d.sc(&["exec", "--", "true"]).assert_success();
    // `sc exec` returns once its `Exited` is sent (cli/reattach.rs,
    // `report_exit_quick`); the daemon takes it off the list right after.
    wait_until(T, "the job to leave sc ps", || d.ps().is_empty());
    let mut c = RawClient::connect(d.socket());
    c.hello();
}

#[test]
fn raw_client_works() {
    // Control: the raw client speaks the protocol the daemon expects.
    let d = TestDaemon::start("");
    let mut c = RawClient::connect(d.socket());
    c.hello();
    c.send(&Request::Ps);
    match c.recv(T) {
        RawReply::Frame(Response::Jobs { jobs, .. }) => assert!(jobs.is_empty(), "{jobs:?}"),
        other => panic!("expected Jobs, got {other:?}"),
    }
    c.send(&Request::Status);
    match c.recv(T) {
        RawReply::Frame(Response::Status(st)) => {
            assert_eq!(st.cores, 2);
            assert_eq!(st.mem_total, 4 << 30);
        }
        other => panic!("expected Status, got {other:?}"),
    }
}

#[test]
fn http_garbage_gets_error_or_close() {
    let d = TestDaemon::start("");
    let mut c = RawClient::connect(d.socket());
    let _ = c.send_bytes(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    match c.recv(T) {
        RawReply::Frame(Response::Error { kind, message }) => {
            assert_eq!(kind, ErrorKind::BadFrame, "{message}");
            assert!(c.closed_within(T), "connection left open after a bad frame");
        }
        RawReply::Closed => {}
        other => panic!("expected an error frame or a close, got {other:?}"),
    }
    still_serving(&d);
}

#[test]
fn oversize_frame_is_refused_from_its_header() {
    let d = TestDaemon::start("");
    let mut c = RawClient::connect(d.socket());
    c.hello();
    // A request header claiming 100 MB, and no payload: the daemon must
    // refuse from the header alone, not wait for (or buffer) the payload.
    let mut header = vec![b's', b'c', PROTOCOL_VERSION, 1];
    header.extend_from_slice(&100_000_000u32.to_be_bytes());
    c.send_bytes(&header).expect("send header");
    match c.recv(T) {
        RawReply::Frame(Response::Error { kind, message }) => {
            assert_eq!(kind, ErrorKind::TooLarge, "{message}");
            assert!(
                c.closed_within(T),
                "connection left open after an oversize frame"
            );
        }
        RawReply::Closed => {}
        other => panic!("expected an error frame or a close, got {other:?}"),
    }
    still_serving(&d);
}

#[test]
fn oversize_first_frame_is_refused() {
    let d = TestDaemon::start("");
    let mut c = RawClient::connect(d.socket());
    let mut header = vec![b's', b'c', PROTOCOL_VERSION, 1];
    header.extend_from_slice(&100_000_000u32.to_be_bytes());
    c.send_bytes(&header).expect("send header");
    match c.recv(T) {
        RawReply::Frame(Response::Error { kind, .. }) => assert_eq!(kind, ErrorKind::TooLarge),
        RawReply::Closed => {}
        other => panic!("expected an error frame or a close, got {other:?}"),
    }
    still_serving(&d);
}

#[test]
fn wrong_version_gets_error_naming_it() {
    let d = TestDaemon::start("");
    let mut c = RawClient::connect(d.socket());
    let mut frame = vec![b's', b'c', 99, 1];
    frame.extend_from_slice(&0u32.to_be_bytes());
    c.send_bytes(&frame).expect("send");
    match c.recv(T) {
        RawReply::Frame(Response::Error { kind, message }) => {
            assert_eq!(kind, ErrorKind::UnsupportedVersion, "{message}");
            assert!(
                message.contains("99"),
                "error does not name version 99: {message}"
            );
        }
        other => panic!("expected an error frame naming the version, got {other:?}"),
    }
    assert!(
        c.closed_within(T),
        "connection left open after a wrong version"
    );
    still_serving(&d);
}

#[test]
fn request_before_hello_is_refused() {
    let d = TestDaemon::start("");
    let mut c = RawClient::connect(d.socket());
    c.send(&Request::Ps);
    match c.recv(T) {
        RawReply::Frame(Response::Error { .. }) | RawReply::Closed => {}
        other => panic!("Ps before Hello was not refused: {other:?}"),
    }
    still_serving(&d);
}

#[test]
fn undecodable_payload_gets_error() {
    let d = TestDaemon::start("");
    let mut c = RawClient::connect(d.socket());
    c.hello();
    // A valid header with a payload that is no Request (variant 200).
    let payload = [200u8, 1, 2, 3];
    let mut frame = vec![b's', b'c', PROTOCOL_VERSION, 1];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    c.send_bytes(&frame).expect("send");
    match c.recv(T) {
        RawReply::Frame(Response::Error { kind, .. }) => assert_eq!(kind, ErrorKind::BadFrame),
        RawReply::Closed => {}
        other => panic!("expected an error frame or a close, got {other:?}"),
    }
    still_serving(&d);
}

#[test]
fn client_vanishing_mid_frame_does_not_hurt() {
    let d = TestDaemon::start("");
    for _ in 0..20 {
        let mut c = RawClient::connect(d.socket());
        let _ = c.send_bytes(&[b's', b'c', PROTOCOL_VERSION, 1, 0, 0, 1]);
        drop(c);
    }
    still_serving(&d);
}
