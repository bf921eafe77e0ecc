//! The axon's signature check of one synapse request, and the parts it is
//! made of.
//!
//! Everything timed here is cm-host's own code (`gate::parse_auth`,
//! `Auth::verify_cached`, `sig::verify`, `ss58::decode_key`,
//! `sig::Message`), fed with the header block a bittensor 10.5.0 dendrite
//! sends (AXON.md §2), signed with cm-host's dendrite-side signer for our
//! miner hotkey. 64 header blocks with distinct nonces are cycled, and every
//! check must come back `Ok`, so a bench that quietly timed a refusal
//! (which is cheaper than a verification) would stop with a panic instead.
//!
//! Ids, so the README can say where the time goes:
//! - `check/full`: the whole check of one request on the single-signature
//!   path (`Auth::verify_cached`): parse the auth headers (including the
//!   SS58 decode of the caller's hotkey and the hex decode of the
//!   signature), check the body-hash constant, build the signed message
//!   with our hotkey and verify it with the decompressed key from the cache.
//!   The server takes the batch path (`Auth::verify_batched`), which for a
//!   request alone in the queue does the same work plus the queue hand-off
//!   and one yield to the runtime; that part is not timed here.
//! - `verify/cached_key`: the verification alone, key already decompressed
//!   (a caller the server has seen before: the normal case).
//! - `verify/key_table`: the same verification from a fixed-base table
//!   precomputed for the caller's key (`sig_table::KeyTable`), the candidate
//!   for allow-listed validators; compare with `verify/cached_key`.
//! - `verify/decoded_key`: the verification alone from the 32 key bytes,
//!   decompressing the Ristretto point each time (a caller's first request).
//! - `stage/{parse_auth,ss58_decode,message}`: the cheap parts of `check/full`,
//!   and `stage/key_decompress` (schnorrkel's `PublicKey::from_bytes`, which
//!   `sig::verify` calls and the cache saves), because the difference of the
//!   two `verify` ids is smaller than their run-to-run noise on a shared host.
//!
//! Thread CPU time (`support/cpu_clock.rs`), one check per element.
//!
//!     cargo bench --bench signature

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use cm_host::gate::{self, EMPTY_BODY_HASH};
use cm_host::sig::{self, Message};
use cm_host::sig_batch::KeyCache;
use cm_host::sig_table::KeyTable;
use cm_host::ss58;
use cm_host::wallet::Hotkey;
use cm_probe::DENDRITE_VERSION;

mod support;

use support::cpu_clock::CpuClock;

/// Distinct signed header blocks the benches cycle through.
const N_REQUESTS: usize = 64;
/// Fixed seeds, so the keys (not the signatures: sr25519 signing is
/// randomised) are the same in every run.
const VALIDATOR_SEED: &str = "0x9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const MINER_SEED: &str = "0x4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
/// A uuid1-shaped dendrite uuid.
const UUID: &str = "5c06965a-e8f3-11f1-9a7d-02fc00000001";
/// A nonce in the range `time.time_ns()` gives today; the gate does not
/// look at the clock, only the nonce map (not benched here) does.
const FIRST_NONCE: u64 = 1_795_626_734_383_137_861;

/// The header block of one signed ConversionSynapse request.
fn headers(validator: &Hotkey, miner: &str, nonce: u64) -> HeaderMap {
    let kp = validator
        .keypair
        .as_ref()
        .expect("seeded hotkey has a secret");
    let msg =
        Message::new(nonce, &validator.ss58, miner, UUID, EMPTY_BODY_HASH).expect("message fits");
    let signature = sig::sign_hex(kp, msg.as_bytes());
    let pairs: [(&'static str, String); 15] = [
        ("name", "ConversionSynapse".into()),
        ("timeout", "12.0".into()),
        ("bt_header_axon_ip", "127.0.0.1".into()),
        ("bt_header_axon_port", "8091".into()),
        ("bt_header_axon_hotkey", miner.into()),
        ("bt_header_dendrite_ip", "127.0.0.1".into()),
        (gate::H_VERSION, DENDRITE_VERSION.to_string()),
        (gate::H_NONCE, nonce.to_string()),
        (gate::H_UUID, UUID.into()),
        (gate::H_HOTKEY, validator.ss58.clone()),
        (gate::H_SIGNATURE, signature),
        ("bt_header_input_obj_features", "e30=".into()),
        ("header_size", "0".into()),
        ("total_size", "0".into()),
        (gate::H_BODY_HASH, EMPTY_BODY_HASH.into()),
    ];
    let mut h = HeaderMap::with_capacity(pairs.len() + 2);
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(&v).expect("ASCII header"),
        );
    }
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

fn bench_signature(c: &mut Criterion<CpuClock>) {
    let validator = Hotkey::from_seed_hex(VALIDATOR_SEED).expect("seed");
    let miner = Hotkey::from_seed_hex(MINER_SEED).expect("seed").ss58;
    let blocks: Vec<HeaderMap> = (0..N_REQUESTS as u64)
        .map(|i| headers(&validator, &miner, FIRST_NONCE + i * 1_000_003))
        .collect();
    // The parsed form, for the benches of single stages.
    let auths: Vec<gate::Auth<'_>> = blocks
        .iter()
        .map(|h| gate::parse_auth(h).expect("dendrite headers parse"))
        .collect();
    let messages: Vec<Message> = auths
        .iter()
        .map(|a| a.message(&miner).expect("message fits"))
        .collect();
    // The server's cache, warmed by the first verified request as in serving.
    let cache = KeyCache::default();
    for (a, m) in auths.iter().zip(&messages) {
        cache
            .verify(&a.hotkey, m.as_bytes(), &a.signature)
            .expect("our signature verifies");
        // Signed for our hotkey: any other axon hotkey must refuse it.
        assert!(a.verify(&validator.ss58).is_err());
    }

    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    g.bench_function("check/full", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_REQUESTS;
            let a = gate::parse_auth(black_box(&blocks[i])).expect("parses");
            gate::check_body_hash(&a).expect("empty-body hash");
            a.verify_cached(black_box(&miner), &cache)
                .expect("verifies");
            black_box(a.nonce)
        })
    });
    g.bench_function("verify/cached_key", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_REQUESTS;
            let a = &auths[i];
            cache
                .verify(
                    black_box(&a.hotkey),
                    black_box(messages[i].as_bytes()),
                    &a.signature,
                )
                .expect("verifies")
        })
    });
    // The same verification from a table precomputed for the caller's key
    // (cm_host::sig_table), against `verify/cached_key` in the same run.
    let public = schnorrkel::PublicKey::from_bytes(&validator.public).expect("valid key");
    let table = KeyTable::new(public);
    g.bench_function("verify/key_table", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_REQUESTS;
            table
                .verify(black_box(messages[i].as_bytes()), &auths[i].signature)
                .expect("verifies")
        })
    });
    g.bench_function("verify/decoded_key", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_REQUESTS;
            let a = &auths[i];
            sig::verify(
                black_box(&a.hotkey),
                black_box(messages[i].as_bytes()),
                &a.signature,
            )
            .expect("verifies")
        })
    });
    g.bench_function("stage/parse_auth", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_REQUESTS;
            black_box(
                gate::parse_auth(black_box(&blocks[i]))
                    .expect("parses")
                    .nonce,
            )
        })
    });
    g.bench_function("stage/ss58_decode", |b| {
        b.iter(|| black_box(ss58::decode_key(black_box(&validator.ss58)).expect("decodes")))
    });
    g.bench_function("stage/key_decompress", |b| {
        let key = validator.public;
        b.iter(|| {
            black_box(
                schnorrkel::PublicKey::from_bytes(black_box(&key))
                    .expect("valid key")
                    .to_bytes()[0],
            )
        })
    });
    g.bench_function("stage/message", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N_REQUESTS;
            black_box(
                auths[i]
                    .message(black_box(&miner))
                    .expect("fits")
                    .as_bytes()[0],
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench_signature
}
criterion_main!(benches);
