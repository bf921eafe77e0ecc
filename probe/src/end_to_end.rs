//! The real server in-process on a loopback port, driven by the probe's own
//! request builder and checks: one row per gate decision. A test of the
//! probe against the server it is meant to measure, so it lives with the
//! probe (the server's own end-to-end tests start the real binary).

use crate::load::{one, one_forged};
use crate::request::{build_request, now_ns, Plan};
use bytes::Bytes;
use cm_host::conn::ConnLimits;
use cm_host::gate::EMPTY_BODY_HASH;
use cm_host::server::{self, State};
use cm_host::sig::Message;
use cm_host::wallet::Hotkey;
use cm_host::{limits, metrics, nonce, reason::Reason, validators};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pooled client for the hand-made hostile requests.
type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn model() -> &'static cm_core::model::Model {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../weights/model.json");
    Box::leak(
        cm_modelfile::load(&path)
            .expect("weights/model.json loads")
            .model,
    )
}

async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> (u16, hyper::HeaderMap, Value) {
    let resp = client.request(req).await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn with_body(req: Request<Full<Bytes>>, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let (parts, _) = req.into_parts();
    Request::from_parts(parts, Full::new(body.into()))
}

#[test]
fn every_gate_decision() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let miner = Hotkey::generate();
        let signer = Hotkey::generate();
        let list = validators::AllowList::parse(&format!("{},10\n", signer.ss58)).unwrap();
        let state = Arc::new(State {
            life: Arc::new(cm_host::lifecycle::Lifecycle::embedded(model(), "test")),
            kernel: cm_host::kernel::select("auto").unwrap(),
            hotkey_ss58: miner.ss58.clone(),
            allow_all: false,
            validators: Some(Arc::new(validators::Shared::new(list))),
            nonces: Mutex::new(nonce::NonceMap::new(1000, nonce::DEFAULT_FUTURE_SKEW_NS)),
            keys: cm_host::sig_batch::KeyCache::default(),
            btauth: Mutex::new(cm_host::btauth::replay::ReplayStore::new(
                cm_host::btauth::Window::default(),
                cm_host::btauth::replay::DEFAULT_CAPACITY,
            )),
            inflight: limits::InFlight::default(),
            verify: limits::VerifyBudget::new(0, 0),
            conns: Arc::new(cm_host::conn::Registry::new(64, 0)),
            conn_stats: server::ConnStats::default(),
            rate: limits::RateLimiter::new(0.0, 0.0),
            metrics: metrics::Metrics::default(),
            max_inflight: 64,
            max_body: 64 * 1024,
            body_timeout: Duration::from_secs(5),
            started: Instant::now(),
            external_ip: "127.0.0.1".into(),
            external_port: 0,
            netuid: None,
            accounting: cm_host::accounting::Accounting::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = match listener.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let lim = ConnLimits {
            header_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_connections: 64,
            max_per_source: 0,
            idle: Duration::ZERO,
            write_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(2),
        };
        let srv = tokio::spawn(server::run_until(
            listener,
            None,
            state.clone(),
            lim,
            async {
                let _ = stop_rx.await;
            },
        ));
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let rows = cm_subnet::sample::test_set(3, 4);
        let plan = Plan::new(target, miner.ss58.clone(), signer, 12.0, rows, "e2e").unwrap();
        let mut conn = None;
        let now = now_ns();

        // A good request, then its replay.
        let s = one(&mut conn, &plan, 0, now, "u-1")
            .await
            .expect("good request");
        assert!(s.reward0 > 0.0);
        let (st, h, b) = send(&client, build_request(&plan, 0, now, "u-1").unwrap().0).await;
        assert_eq!(
            (st, &h["bt_header_axon_status_code"]),
            (401, &HeaderValue::from_static("401"))
        );
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .starts_with("Not Verified with error: Nonce"),
            "{b}"
        );
        // Out-of-order but unseen nonces of the same uuid pass.
        assert!(one(&mut conn, &plan, 1, now - 1, "u-1").await.is_ok());

        // Stale first nonce.
        let (st, _, b) = send(
            &client,
            build_request(&plan, 0, now - 60_000_000_000, "u-2")
                .unwrap()
                .0,
        )
        .await;
        assert_eq!(st, 401, "{b}");

        // Tampered signature and wrong signing context.
        let (mut req, _, _) = build_request(&plan, 0, now_ns(), "u-3").unwrap();
        let sig_s = req.headers()["bt_header_dendrite_signature"]
            .to_str()
            .unwrap()
            .to_string();
        let flipped = format!(
            "{}{}",
            &sig_s[..10],
            if &sig_s[10..11] == "a" { "b" } else { "a" }
        ) + &sig_s[11..];
        req.headers_mut()
            .insert("bt_header_dendrite_signature", flipped.parse().unwrap());
        assert_eq!(send(&client, req).await.0, 401);
        let n = now_ns();
        let (mut req, _, _) = build_request(&plan, 0, n, "u-4").unwrap();
        let msg = Message::new(n, &plan.signer.ss58, &plan.miner, "u-4", EMPTY_BODY_HASH).unwrap();
        let wrong = plan
            .signer
            .keypair
            .as_ref()
            .unwrap()
            .sign(schnorrkel::signing_context(b"").bytes(msg.as_bytes()));
        req.headers_mut().insert(
            "bt_header_dendrite_signature",
            format!("0x{}", hex::encode(wrong.to_bytes()))
                .parse()
                .unwrap(),
        );
        assert_eq!(send(&client, req).await.0, 401);
        // The probe's own forgery gets exactly that refusal.
        let r = one_forged(&mut conn, &plan, 0, now_ns(), "u-1").await;
        assert!(r.is_ok(), "{:?}", r.err());

        // A caller not on the list.
        let stranger = Plan::new(
            target,
            plan.miner.clone(),
            Hotkey::generate(),
            12.0,
            plan.rows.clone(),
            "e2e",
        )
        .unwrap();
        let (st, h, b) = send(
            &client,
            build_request(&stranger, 0, now_ns(), "u-5").unwrap().0,
        )
        .await;
        assert_eq!(st, 403);
        assert!(h["bt_header_axon_status_message"]
            .to_str()
            .unwrap()
            .starts_with("Forbidden. Key is blacklisted: "));
        assert!(b["message"]
            .as_str()
            .unwrap()
            .contains(&stranger.signer.ss58));

        // Ping.
        let (mut req, _, _) = build_request(&plan, 0, now_ns(), "u-6").unwrap();
        *req.uri_mut() = format!("http://{target}/Synapse").parse().unwrap();
        let (st, h, b) = send(&client, req).await;
        assert_eq!((st, b["axon"]["status_code"].as_u64()), (200, Some(200)));
        assert_eq!(h["bt_header_axon_status_code"], "200");
        assert_eq!(b["name"], "Synapse");

        // Unknown path, wrong method.
        let (mut req, _, _) = build_request(&plan, 0, now_ns(), "u-7").unwrap();
        *req.uri_mut() = format!("http://{target}/Nope").parse().unwrap();
        let (st, _, b) = send(&client, req).await;
        assert_eq!(st, 404);
        assert_eq!(
            b["message"],
            "Synapse name 'Nope' not found. Available synapses ['Synapse', 'ConversionSynapse']"
        );
        let get = Request::get(format!("http://{target}/ConversionSynapse"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&client, get).await.0, 405);

        // Bodies: missing required feature, not JSON, too large.
        let (req, body, _) = build_request(&plan, 0, now_ns(), "u-8").unwrap();
        let mut body: Value = serde_json::from_slice(&body).unwrap();
        body["features"]
            .as_object_mut()
            .unwrap()
            .remove("message_ratio");
        let (st, _, b) = send(&client, with_body(req, serde_json::to_vec(&body).unwrap())).await;
        assert_eq!(st, 400);
        assert!(
            b["message"].as_str().unwrap().contains("message_ratio"),
            "{b}"
        );
        let (req, _, _) = build_request(&plan, 0, now_ns(), "u-9").unwrap();
        assert_eq!(send(&client, with_body(req, "not json")).await.0, 400);
        let (req, _, _) = build_request(&plan, 0, now_ns(), "u-10").unwrap();
        assert_eq!(
            send(&client, with_body(req, vec![b' '; 100 * 1024]))
                .await
                .0,
            413
        );

        // Still up, and every refusal was counted by reason. A new
        // connection: the 413 closed the pooled client's, which may
        // race that close with its next request.
        let mut fresh = None;
        let r = one(&mut fresh, &plan, 2, now_ns(), "u-11").await;
        assert!(r.is_ok(), "{:?}", r.as_ref().err());
        let m = &state.metrics;
        for (r, n) in [
            (Reason::NonceReplay, 1),
            (Reason::NonceStale, 1),
            (Reason::SignatureMismatch, 3),
            (Reason::Blacklisted, 1),
            (Reason::NotFound, 1),
            (Reason::MethodNotAllowed, 1),
            (Reason::BadFeatures, 1),
            (Reason::BadJson, 1),
            (Reason::BodyTooLarge, 1),
        ] {
            assert_eq!(m.rejections(r), n, "{r:?}");
        }
        let _ = stop_tx.send(());
        tokio::time::timeout(Duration::from_secs(5), srv)
            .await
            .expect("server drains")
            .unwrap();
    });
}
