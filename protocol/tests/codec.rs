//! Codec properties: every message survives a round trip, split at any byte
//! boundary; arbitrary bytes never panic the decoder; bad headers are named.

use proptest::prelude::*;
use sc_protocol::codec::{self, CodecError, FrameDecoder, FrameKind, HEADER_LEN, MAX_FRAME_LEN};
use sc_protocol::*;

fn arb_requests() -> impl Strategy<Value = Requests> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(mem, mem_limit, mem_high, cpu_milli, pids)| Requests {
            mem,
            mem_limit,
            mem_high,
            cpu_milli,
            pids,
        })
}

fn arb_exec() -> impl Strategy<Value = ExecRequest> {
    (
        proptest::collection::vec(".*", 1..6),
        ".*",
        arb_requests(),
        any::<i32>(),
        proptest::option::of("[a-z]{0,8}"),
        any::<u32>(),
        any::<u32>(),
        proptest::option::of(any::<u64>()),
        any::<u32>(),
        proptest::collection::vec(("[a-z0-9._-]{1,8}", 1..5u32), 0..3),
    )
        .prop_map(
            |(argv, cwd, requests, priority, name, uid, client_pid, timeout_ms, pid, needs)| {
                ExecRequest {
                    argv,
                    cwd,
                    requests,
                    priority,
                    name,
                    uid,
                    client_pid,
                    timeout_ms,
                    pid,
                    wait_for: vec![],
                    wait_timeout_ms: None,
                    needs: needs
                        .into_iter()
                        .map(|(name, units)| Need { name, units })
                        .collect(),
                    no_preempt: pid % 2 == 0,
                    ports: vec![],
                }
            },
        )
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u8>(), ".*").prop_map(|(protocol, client)| Request::Hello { protocol, client }),
        arb_exec().prop_map(Request::Exec),
        (any::<u64>(), any::<i32>(), any::<bool>()).prop_map(|(job, c, usage)| {
            Request::Exited {
                job,
                exit: ChildExit::Code(c),
                usage,
            }
        }),
        (any::<u64>(), any::<i32>(), any::<bool>()).prop_map(|(job, s, usage)| {
            Request::Exited {
                job,
                exit: ChildExit::Signal(s),
                usage,
            }
        }),
        (arb_exec(), any::<u64>(), any::<bool>(), any::<u64>()).prop_map(
            |(exec, job, running, waited_ms)| Request::Reattach {
                exec,
                job,
                running,
                waited_ms
            }
        ),
        Just(Request::Ps),
        Just(Request::Status),
        any::<u64>().prop_map(|job| Request::Cancel { job }),
        any::<u64>().prop_map(|job| Request::Pause { job }),
        any::<u64>().prop_map(|job| Request::Resume { job }),
    ]
}

proptest! {
    #[test]
    fn request_round_trip_in_pieces(msgs in proptest::collection::vec(arb_request(), 1..5), cut in any::<usize>()) {
        let mut bytes = Vec::new();
        for m in &msgs {
            codec::encode(FrameKind::Request, m, &mut bytes).unwrap();
        }
        let cut = cut % (bytes.len() + 1);
        let mut dec = FrameDecoder::new(FrameKind::Request);
        let mut out = Vec::new();
        dec.push(&bytes[..cut]);
        while let Some(m) = dec.next_msg::<Request>().unwrap() { out.push(m); }
        dec.push(&bytes[cut..]);
        while let Some(m) = dec.next_msg::<Request>().unwrap() { out.push(m); }
        prop_assert_eq!(out, msgs);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = FrameDecoder::new(FrameKind::Request);
        dec.push(&bytes);
        for _ in 0..4 { let _ = dec.next_msg::<Request>(); }
        let mut dec = FrameDecoder::new(FrameKind::Response);
        dec.push(&bytes);
        for _ in 0..4 { let _ = dec.next_msg::<Response>(); }
    }

    #[test]
    fn valid_header_garbage_payload_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = b"sc".to_vec();
        bytes.push(PROTOCOL_VERSION);
        bytes.push(FrameKind::Request as u8);
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        let mut dec = FrameDecoder::new(FrameKind::Request);
        dec.push(&bytes);
        let _ = dec.next_msg::<Request>();
    }
}

#[test]
fn response_round_trip() {
    let msgs = vec![
        Response::Hello {
            protocol: 1,
            daemon: "sc 0.1.0".into(),
        },
        Response::Waiting {
            job: 4,
            reason: WaitReason::Memory {
                need: 1 << 30,
                free: 1 << 20,
            },
            position: 2,
            waited_ms: 1234,
        },
        Response::error(ErrorKind::Impossible, "needs 64 GiB, host has 24 GiB"),
        Response::Waiting {
            job: 5,
            reason: WaitReason::Resource {
                name: "e2e-env".into(),
                holders: vec![ResourceHolder {
                    host: "host-b".into(),
                    job: 42,
                    summary: Some("pnpm test:e2e".into()),
                    held_ms: Some(192_000),
                }],
                ahead: 2,
                detail: None,
            },
            position: 1,
            waited_ms: 10,
        },
        Response::Granted {
            job: 5,
            env: vec![("SC_FENCE_TOKEN".into(), "7".into())],
            cgroup: Some("/sys/fs/cgroup/sc/jobs/5".into()),
            enforced: vec!["memory".into()],
            lease_until_ms: Some(123_456),
            released: true,
        },
        Response::Lease {
            job: 5,
            until_ms: 126_456,
        },
    ];
    let mut bytes = Vec::new();
    for m in &msgs {
        codec::encode(FrameKind::Response, m, &mut bytes).unwrap();
    }
    let mut dec = FrameDecoder::new(FrameKind::Response);
    dec.push(&bytes);
    let mut out = Vec::new();
    while let Some(m) = dec.next_msg::<Response>().unwrap() {
        out.push(m);
    }
    assert_eq!(out, msgs);
}

/// The exact wire bytes of a small request: any change to the format shows
/// here and must come with a protocol version bump.
/// Version 2: `Exited` says whether the client wants the job's accounting.
#[test]
fn golden_frame_v3() {
    let bytes = codec::encode_to_vec(FrameKind::Request, &Request::Cancel { job: 7 }).unwrap();
    assert_eq!(bytes, vec![b's', b'c', 3, 1, 0, 0, 0, 2, 6, 7]);
    let exited = Request::Exited {
        job: 7,
        exit: ChildExit::Code(0),
        usage: true,
    };
    let bytes = codec::encode_to_vec(FrameKind::Request, &exited).unwrap();
    assert_eq!(bytes, vec![b's', b'c', 3, 1, 0, 0, 0, 5, 2, 7, 0, 0, 1]);
    let bytes = codec::encode_to_vec(FrameKind::Request, &Request::Ps).unwrap();
    assert_eq!(bytes.len(), HEADER_LEN + 1);
    // Version 3 added `released` (the daemon released the held child).
    let granted = Response::Granted {
        job: 5,
        env: vec![],
        cgroup: None,
        enforced: vec![],
        lease_until_ms: None,
        released: true,
    };
    let bytes = codec::encode_to_vec(FrameKind::Response, &granted).unwrap();
    assert_eq!(
        bytes,
        vec![b's', b'c', 3, 2, 0, 0, 0, 7, 3, 5, 0, 0, 0, 0, 1]
    );
}

#[test]
fn bad_headers_are_named() {
    let mut dec = FrameDecoder::new(FrameKind::Request);
    dec.push(b"GET / HTTP/1.1\r\n");
    assert_eq!(dec.next_msg::<Request>(), Err(CodecError::BadMagic(*b"GE")));
    // The error sticks: the stream is out of sync.
    assert!(dec.next_msg::<Request>().is_err());

    let mut dec = FrameDecoder::new(FrameKind::Request);
    dec.push(&[b's', b'c', 9, 1, 0, 0, 0, 0]);
    assert_eq!(
        dec.next_msg::<Request>(),
        Err(CodecError::UnsupportedVersion { got: 9 })
    );

    let mut dec = FrameDecoder::new(FrameKind::Request);
    let mut frame = vec![b's', b'c', PROTOCOL_VERSION, 1];
    frame.extend_from_slice(&(MAX_FRAME_LEN + 1).to_be_bytes());
    dec.push(&frame);
    assert!(matches!(
        dec.next_msg::<Request>(),
        Err(CodecError::TooLarge { .. })
    ));

    let mut dec = FrameDecoder::new(FrameKind::Request);
    dec.push(&codec::encode_to_vec(FrameKind::Response, &Response::Resumed { job: 1 }).unwrap());
    assert!(matches!(
        dec.next_msg::<Request>(),
        Err(CodecError::WrongKind { .. })
    ));
}

#[test]
fn trailing_bytes_in_payload_are_refused() {
    let mut frame = codec::encode_to_vec(FrameKind::Request, &Request::Ps).unwrap();
    frame.push(0);
    let len = (frame.len() - HEADER_LEN) as u32;
    frame[4..8].copy_from_slice(&len.to_be_bytes());
    let mut dec = FrameDecoder::new(FrameKind::Request);
    dec.push(&frame);
    assert_eq!(
        dec.next_msg::<Request>(),
        Err(CodecError::TrailingBytes { trailing: 1 })
    );
}
