//! The HTTP client side: one keep-alive connection per simulated dendrite
//! (as a dendrite's aiohttp session holds), each exchange bounded by the
//! request's timeout, and the `/health` poll used to find a miner's hotkey
//! and to wait for one that is still starting.
//!
//! hyper's connection API is used directly instead of a pooled client: a
//! pool costs the probe CPU that it would take from the miner it measures.

use crate::report::Failure;
use crate::request::Plan;
use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// How often `--wait-ready` retries a refused connection.
const WAIT_READY_POLL: Duration = Duration::from_micros(200);

/// One keep-alive connection to the miner, as a dendrite's session holds.
pub(crate) type Conn = SendRequest<Full<Bytes>>;

/// Opens a connection; the returned error says whether it was refused.
async fn connect(target: SocketAddrV4) -> Result<Conn, Failure> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// Sends on the slot's connection, opening a new one when there is none or
/// the miner closed it.
async fn send_on(
    conn: &mut Option<Conn>,
    target: SocketAddrV4,
    mut req: Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, Failure> {
    // hyper's connection API writes the URI as given: send origin-form, as
    // aiohttp does (the Host header is already set).
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = hyper::Uri::from(pq);
    }
    let reusable = match conn.as_mut() {
        Some(tx) if !tx.is_closed() => tx.ready().await.is_ok(),
        _ => false,
    };
    if !reusable {
        *conn = Some(connect(target).await?);
    }
    let tx = conn.as_mut().ok_or(Failure::Connect)?;
    match tx.send_request(req).await {
        Ok(r) => Ok(r),
        Err(_) => {
            *conn = None;
            Err(Failure::Transport)
        }
    }
}

/// What came back for one request: status, whether
/// `bt_header_axon_status_code` matched the status, whether the body is
/// JSON (else the content type), and the body.
pub(crate) struct Exchange {
    pub(crate) status: u16,
    pub(crate) hdr_matches: bool,
    pub(crate) json: bool,
    pub(crate) ctype: String,
    pub(crate) body: Bytes,
}

/// Sends `req` and reads the whole answer within the plan's timeout.
pub(crate) async fn exchange(
    conn: &mut Option<Conn>,
    plan: &Plan,
    req: Request<Full<Bytes>>,
) -> Result<Exchange, Failure> {
    let fut = async {
        let resp = send_on(conn, plan.target, req).await?;
        let status = resp.status().as_u16();
        let hdr_matches = resp
            .headers()
            .get("bt_header_axon_status_code")
            .is_some_and(|v| v.as_bytes() == status.to_string().as_bytes());
        let json = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let ctype = if json {
            String::new()
        } else {
            format!("{:?}", resp.headers().get("content-type"))
        };
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Transport)?
            .to_bytes();
        Ok::<_, Failure>(Exchange {
            status,
            hdr_matches,
            json,
            ctype,
            body,
        })
    };
    match tokio::time::timeout(Duration::from_secs_f64(plan.timeout), fut).await {
        Err(_) => {
            *conn = None;
            Err(Failure::Timeout)
        }
        Ok(Err(f)) => {
            *conn = None;
            Err(f)
        }
        Ok(Ok(r)) => Ok(r),
    }
}

/// GET /health on a fresh connection; `Failure::Connect` while nothing listens.
async fn get_health(target: SocketAddrV4) -> Result<Value, Failure> {
    let mut conn = None;
    let req = Request::get(format!("http://{target}/health"))
        .header("host", target.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| Failure::BadAnswer(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), send_on(&mut conn, target, req))
        .await
        .map_err(|_| Failure::Timeout)??;
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|_| Failure::Transport)?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| Failure::BadAnswer("/health is not JSON".into()))
}

/// Polls /health until the miner answers or `wait` runs out (`wait` zero: one try).
pub(crate) async fn wait_for_health(target: SocketAddrV4, wait: Duration) -> Result<Value> {
    let deadline = Instant::now() + wait;
    loop {
        match get_health(target).await {
            Ok(v) => return Ok(v),
            Err(Failure::Connect) if Instant::now() < deadline => {
                tokio::time::sleep(WAIT_READY_POLL).await;
            }
            Err(f) => bail!("GET http://{target}/health: {f}"),
        }
    }
}
