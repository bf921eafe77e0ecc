//! The attacks of issue 12, scaled down, against the real binary on
//! loopback: one host with no key (or one allowed key) tries to take the
//! miner away from a validator. Attackers connect from 127.0.0.2 and up, the
//! validator from 127.0.0.1, so the server sees two hosts. Each test runs an
//! attack in background threads and, while it runs, checks that the
//! validator's signed requests keep getting 200; then that the defence did
//! the work (its counter in /metrics moved), so a test cannot pass because
//! the attack never landed. Every test is bounded: a few hundred sockets at
//! most and a few seconds of attack.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const VALIDATOR_SEED: [u8; 32] = [41; 32];
const ATTACKER_SEED: [u8; 32] = [43; 32];
const SYNAPSE: &str = "/ConversionSynapse";
/// The scaled-down server: 64 connection slots.
const MAX_CONNECTIONS: &str = "64";
/// Attacking sockets per attacking host (two hosts: 70 each, over the 64 slots).
const ATTACK_SOCKETS: usize = 70;
/// Requests each slow reader pipelines: their answers (about 0.7 KB each)
/// are far more than loopback socket buffers hold, so writes stall.
const PIPELINED: usize = 20_000;
/// Attacking hosts' loopback addresses.
const HOST_A: [u8; 4] = [127, 0, 0, 2];
/// A host that only opens idle connections, more than its share.
const HOST_C: [u8; 4] = [127, 0, 0, 4];
/// `--max-connections-per-ip` of the slow-reader test, and how many idle
/// connections host C tries.
const PER_IP: &str = "40";
const IDLE_TRIES: usize = 50;
const HOST_B: [u8; 4] = [127, 0, 0, 3];
/// Validator requests sent during each attack, and the pause between them.
const VALIDATOR_REQUESTS: usize = 15;
const VALIDATOR_GAP: Duration = Duration::from_millis(150);
/// How long the validator waits for one answer (the dendrite's 12 s timeout
/// is the real bound; answering takes milliseconds when nothing is wrong).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Sends one fresh signed request as the validator on a new connection.
fn validator_call(rig: &Rig) -> (u16, Duration, String) {
    let s = rig
        .validator
        .build(&rig.call(SYNAPSE, now_ns(), synapse_fields(sample_features())));
    let raw = encode_request("POST", SYNAPSE, rig.addr(), &s.headers, &s.body);
    let t = Instant::now();
    match raw_exchange(rig.addr(), &raw) {
        Ok(r) => (r.status, t.elapsed(), r.text()),
        Err(e) => (0, t.elapsed(), format!("no answer: {e}")),
    }
}

/// The validator's requests during an attack: every one answered 200, in time.
fn assert_validator_served(rig: &Rig, attack: &str) {
    assert_validator_served_at(rig, attack, VALIDATOR_REQUESTS, VALIDATOR_GAP);
}

fn assert_validator_served_at(rig: &Rig, attack: &str, n: usize, gap: Duration) {
    for i in 0..n {
        let (status, took, text) = validator_call(rig);
        assert_eq!(
            status,
            200,
            "{attack}: validator request {i} got {status} after {took:?}: {text}\nserver output:\n{}",
            rig.server.log_text()
        );
        assert!(
            took < ANSWER_WITHIN,
            "{attack}: validator request {i} took {took:?}"
        );
        std::thread::sleep(gap);
    }
}

fn gauge(rig: &Rig, name: &str) -> f64 {
    let text = rig.server.metrics_text();
    metric_value(&text, &format!("{name} ")).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` pipelined `GET /health` requests on one connection.
fn pipelined_health(n: usize) -> Vec<u8> {
    b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n".repeat(n)
}

/// Defect 1: slow readers. A third host first asks for 50 idle connections
/// and gets its share of 40. Then two hosts open 70 connections each against
/// 64 slots (at most 40 per host), pipeline 20,000 cheap requests on each and
/// never read; every dropped connection is reopened at once. The server
/// must cut each stalled connection after `--write-timeout`, refuse each
/// host's connections beyond its share, make an unverified connection of
/// the biggest host give way when a validator connects, and so keep
/// answering the validator.
#[test]
fn slow_readers_cannot_hold_the_connection_slots() {
    let rig = Rig::start(
        &[
            "--dev",
            "--max-connections",
            MAX_CONNECTIONS,
            "--max-connections-per-ip",
            PER_IP,
            "--write-timeout",
            "1",
        ],
        VALIDATOR_SEED,
    );
    let addr = rig.addr();
    // Host C asks for more than its share: the ones beyond it are closed.
    let idle: Vec<TcpStream> = (0..IDLE_TRIES)
        .filter_map(|_| connect_from(HOST_C, addr, None).ok())
        .collect();
    let over = (IDLE_TRIES - PER_IP.parse::<usize>().expect("number")) as f64;
    wait_until("host C held to its share", Duration::from_secs(10), || {
        rig.server
            .metric("cm_connections_refused_total", "reason=\"per_source\"")
            >= over
    });
    let flood = Flood::start(2, move |host, stop| {
        let src = if host == 0 { HOST_A } else { HOST_B };
        let payload = pipelined_health(PIPELINED);
        let mut socks: Vec<TcpStream> = Vec::new();
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // Keep ATTACK_SOCKETS open; a refused or closed one is replaced.
            socks.retain(|s| {
                let mut b = [0u8; 1];
                s.set_nonblocking(true).is_ok()
                    && match s.peek(&mut b) {
                        Ok(n) => n > 0,
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    }
            });
            while socks.len() < ATTACK_SOCKETS {
                match connect_from(src, addr, Some(4096)) {
                    Ok(mut s) => {
                        // As much as the socket takes at once, without waiting.
                        s.set_nonblocking(true).ok();
                        let _ = s.write(&payload);
                        sent += PIPELINED as u64;
                        socks.push(s);
                    }
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    });
    // The attack has landed: slots full, stalled writes cut, shares enforced.
    wait_until("connections at the cap", Duration::from_secs(10), || {
        gauge(&rig, "cm_connections_open") >= 60.0
    });
    assert_validator_served(&rig, "slow readers");
    wait_until(
        "a stalled answer cut by the write timeout",
        Duration::from_secs(10),
        || {
            rig.server
                .metric("cm_connections_closed_total", "rule=\"write_timeout\"")
                > 0.0
        },
    );
    let sent = flood.stop();
    assert!(sent > 0);
    drop(idle);
    let evicted = rig
        .server
        .metric("cm_connections_closed_total", "rule=\"evicted\"");
    assert!(evicted > 0.0, "no unverified connection gave way");
    assert_validator_served(&rig, "after the slow readers");
}

/// Defect 1, the gentle variant: a connection that sends one cheap request
/// every 0.4 s (well inside the 5 s header timeout) is closed once
/// `--conn.idle` has passed without a verified request, while a validator's
/// keep-alive connection that keeps sending verified requests is not.
#[test]
fn a_trickle_of_cheap_requests_does_not_keep_a_connection() {
    let rig = Rig::start(&["--dev", "--conn.idle", "2"], VALIDATOR_SEED);
    let mut trickle = connect_from(HOST_A, rig.addr(), None).expect("connect");
    let t0 = Instant::now();
    let closed_after = loop {
        let ok = trickle
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .is_ok()
            && read_response(&mut trickle).is_ok_and(|r| r.status == 200);
        if !ok {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "trickle kept its connection"
        );
        std::thread::sleep(Duration::from_millis(400));
    };
    assert!(
        closed_after >= Duration::from_millis(1900),
        "closed too early: {closed_after:?}"
    );
    assert!(
        rig.server
            .metric("cm_connections_closed_total", "rule=\"idle\"")
            >= 1.0
    );
    // The validator on one keep-alive connection, a verified request every
    // 0.4 s for longer than the idle bound: never closed.
    let mut keep = TcpStream::connect(rig.addr()).expect("connect");
    keep.set_read_timeout(Some(IO_TIMEOUT)).ok();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        let s =
            rig.validator
                .build(&rig.call(SYNAPSE, now_ns(), synapse_fields(sample_features())));
        let mut raw = encode_request("POST", SYNAPSE, rig.addr(), &s.headers, &s.body);
        // Keep-alive, not the helper's `connection: close`.
        let text = String::from_utf8(raw.clone()).expect("ascii");
        raw = text.replacen("connection: close\r\n", "", 1).into_bytes();
        keep.write_all(&raw).expect("validator write");
        let r = read_response(&mut keep).expect("validator answer on its connection");
        assert_eq!(r.status, 200, "{}", r.text());
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// A well-formed request claiming `who`'s hotkey with a signature it did
/// not make (a listed validator's hotkey is public; forging needs no key).
fn forged(rig: &Rig, who: &Signer) -> Vec<u8> {
    let c = rig.call(SYNAPSE, now_ns(), synapse_fields(sample_features()));
    let mut s = who.build(&c);
    for (k, v) in s.headers.iter_mut() {
        if k == "bt_header_dendrite_signature" {
            *v = flip_last_hex(v);
        }
    }
    let raw = encode_request("POST", SYNAPSE, rig.addr(), &s.headers, &s.body);
    let text = String::from_utf8(raw).expect("ascii");
    text.replacen("connection: close\r\n", "", 1).into_bytes()
}

/// Defect 2: forged requests from one host, claiming the validator's own
/// hotkey, on 70 keep-alive connections as fast as they are answered, with
/// `--max-inflight 4`. They wait for verification in their host's share of
/// the verification budget, never in the in-flight cap, so the validator's
/// verified requests are still admitted.
#[test]
fn forged_requests_cannot_take_the_inflight_capacity() {
    let rig = Rig::start(
        &["--dev", "--max-inflight", "4", "--verify.per-source", "8"],
        VALIDATOR_SEED,
    );
    let before = rig
        .server
        .metric("cm_rejections_total", "reason=\"signature_mismatch\"");
    let validator = Signer::from_seed(VALIDATOR_SEED);
    let reqs: Vec<Vec<u8>> = (0..64).map(|_| forged(&rig, &validator)).collect();
    let addr = rig.addr();
    let flood = Flood::start(ATTACK_SOCKETS, move |i, stop| {
        let Ok(mut s) = connect_from(HOST_A, addr, None) else {
            std::thread::sleep(Duration::from_millis(50));
            return 0;
        };
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let raw = &reqs[(i + sent as usize) % reqs.len()];
            if s.write_all(raw).is_err() {
                break;
            }
            match read_response(&mut s) {
                Ok(r) => assert!(
                    r.status == 401 || r.status == 503,
                    "forgery answered {}: {}",
                    r.status,
                    r.text()
                ),
                Err(_) => break,
            }
            sent += 1;
        }
        sent
    });
    wait_until(
        "forgeries reaching verification",
        Duration::from_secs(10),
        || {
            rig.server
                .metric("cm_rejections_total", "reason=\"signature_mismatch\"")
                > before + 100.0
        },
    );
    assert_validator_served(&rig, "forged-signature flood");
    let sent = flood.stop();
    assert!(sent > 100, "the flood sent {sent}");
}

/// Signs one request as `who` with `uuid`, returns the raw bytes.
fn signed_raw(rig: &Rig, who: &Signer) -> Vec<u8> {
    let s = who.build(&rig.call(SYNAPSE, now_ns(), synapse_fields(sample_features())));
    encode_request("POST", SYNAPSE, rig.addr(), &s.headers, &s.body)
}

/// `raw` with its (unsigned) `timeout` header set to `t`.
fn with_timeout(raw: &[u8], t: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).expect("ascii");
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("timeout:") {
            out.push_str(&format!("timeout: {t}\r\n"));
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// Defect 3: an allowed caller sends hundreds of fresh dendrite uuids
/// (against `--nonce.capacity 64 --nonce.per-hotkey 8`); a captured request
/// of the validator is then replayed, also with the unsigned `timeout`
/// header raised to 120, and must be refused. The validator then floods its
/// own uuids until its first one is evicted: the replay is still refused
/// (the hotkey's floor), and its fresh requests still pass.
#[test]
fn a_replay_after_a_uuid_flood_is_refused() {
    let rig = Rig::start(
        &["--dev", "--nonce.capacity", "64", "--nonce.per-hotkey", "8"],
        VALIDATOR_SEED,
    );
    let captured = signed_raw(&rig, &rig.validator);
    let r = raw_exchange(rig.addr(), &captured).expect("first send");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut attacker = Signer::from_seed(ATTACKER_SEED);
    for i in 0..300 {
        attacker.renew_uuid();
        let r = raw_exchange(rig.addr(), &signed_raw(&rig, &attacker)).expect("flood");
        assert_eq!(r.status, 200, "flood request {i}: {}", r.text());
    }
    for t in ["12.0", "120"] {
        let r = raw_exchange(rig.addr(), &with_timeout(&captured, t)).expect("replay");
        assert_eq!(r.status, 401, "replay (timeout {t}) answered: {}", r.text());
        let v: Value = r.json();
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains("Nonce")),
            "{v}"
        );
    }
    // The validator's own uuids, until its first is gone.
    let mut v2 = Signer::from_seed(VALIDATOR_SEED);
    for _ in 0..20 {
        v2.renew_uuid();
        let r = raw_exchange(rig.addr(), &signed_raw(&rig, &v2)).expect("own uuids");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = raw_exchange(rig.addr(), &captured).expect("replay after own eviction");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_validator_served(&rig, "after the uuid flood");
    assert!(
        rig.server
            .metric("cm_rejections_total", "reason=\"nonce_replay\"")
            >= 3.0
    );
}

/// Defect 4: under `--allow-all`-style admission (`--dev`) with
/// `--rate-limit 2 --rate-burst 2 --rate-limit.capacity 64`, 300 fresh
/// hotkeys each drain their bucket, more than the table holds; a new caller
/// is still served at once, and so is the validator throughout.
#[test]
fn a_full_rate_table_never_locks_out_a_new_caller() {
    let rig = Rig::start(
        &[
            "--dev",
            "--rate-limit",
            "2",
            "--rate-burst",
            "2",
            "--rate-limit.capacity",
            "64",
        ],
        VALIDATOR_SEED,
    );
    let addr = rig.addr();
    let miner = rig.miner.clone();
    let flood = Flood::start(4, move |t, stop| {
        let mut sent = 0;
        for k in 0..75u32 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&(k * 4 + t as u32).to_le_bytes());
            seed[31] = 0x99;
            let who = Signer::from_seed(seed);
            // Three requests: the bucket of two is drained, the third is 429.
            for _ in 0..3 {
                let c = Call::sample(SYNAPSE, &miner, addr);
                let s = who.build(&c);
                let raw = encode_request("POST", SYNAPSE, addr, &s.headers, &s.body);
                if let Ok(r) = raw_exchange(addr, &raw) {
                    assert!(r.status == 200 || r.status == 429, "{}", r.text());
                }
                sent += 1;
            }
        }
        // One pass of 300 keys, then idle until stopped.
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    });
    // Below the validator's own limit of 2 a second.
    assert_validator_served_at(&rig, "rate-table flood", 8, Duration::from_millis(700));
    wait_until(
        "the flood's callers limited",
        Duration::from_secs(30),
        || {
            rig.server
                .metric("cm_rejections_total", "reason=\"rate_limited\"")
                >= 250.0
        },
    );
    let sent = flood.stop();
    assert_eq!(sent, 900, "every flood request was sent");
    let newcomer = Signer::from_seed([0x77; 32]);
    let r = raw_exchange(addr, &signed_raw(&rig, &newcomer)).expect("newcomer");
    assert_eq!(r.status, 200, "a new caller was locked out: {}", r.text());
}

/// Defect 5: `/metrics` is not on the public port (a small 404 there) but
/// on the operator listener; a flood of `GET /metrics` on the public port
/// from 70 keep-alive connections costs the server a 404 each and the
/// validator is still served.
#[test]
fn metrics_is_off_the_public_port() {
    let rig = Rig::start(&["--dev"], VALIDATOR_SEED);
    let r = get(rig.addr(), "/metrics").expect("public /metrics");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.body.len() < 512,
        "public /metrics answered {} bytes",
        r.body.len()
    );
    assert!(!r.text().contains("cm_requests_total"));
    assert!(rig.server.metrics_addr.ip().is_loopback());
    assert_ne!(rig.server.metrics_addr.port(), rig.addr().port());
    let text = rig.server.metrics_text();
    assert!(text.contains("cm_requests_total"), "{text}");
    let before = rig
        .server
        .metric("cm_rejections_total", "reason=\"not_found\"");
    let addr = rig.addr();
    let flood = Flood::start(ATTACK_SOCKETS, move |_, stop| {
        let Ok(mut s) = connect_from(HOST_A, addr, None) else {
            std::thread::sleep(Duration::from_millis(50));
            return 0;
        };
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
                .is_err()
            {
                break;
            }
            match read_response(&mut s) {
                Ok(r) => assert_eq!(r.status, 404),
                Err(_) => break,
            }
            sent += 1;
        }
        sent
    });
    wait_until(
        "the /metrics flood landing",
        Duration::from_secs(10),
        || {
            rig.server
                .metric("cm_rejections_total", "reason=\"not_found\"")
                > before + 500.0
        },
    );
    assert_validator_served(&rig, "public /metrics flood");
    assert!(flood.stop() > 500);
}
