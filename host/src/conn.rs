//! Connections: the accept loop and each connection's life, bounded so that
//! no single host can hold the slots validators need.
//!
//! Apart from the routes (server.rs) because it changes for other reasons:
//! what a connection may cost, not what a request means. The rules:
//! - at most `max_connections` open, and at most `max_per_source` from one
//!   source address;
//! - at the cap, a new connection takes the slot of a connection that has
//!   not presented a verified request (it is closed at once): the oldest one
//!   of the source that holds the most connections, so a host flooding
//!   connections evicts its own before a validator's newly opened one, and
//!   else the oldest; if every open connection has presented one, the
//!   newcomer is closed instead;
//! - a connection is closed (gracefully: a request being answered finishes)
//!   once `idle` has passed since it opened or since its last verified
//!   request, whatever else it sends, so cheap requests cannot keep it;
//! - an answer the client does not read within `write_timeout` fails the
//!   connection ([`crate::write_deadline`]);
//! - headers must arrive within `header_timeout` (hyper's own timer).
//!
//! Shutdown stops accepting, closes every connection gracefully, and gives
//! up on those still open after the grace period.

use crate::write_deadline::WriteDeadline;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default cap on connections from one source address.
pub const DEFAULT_MAX_PER_SOURCE: usize = 128;
/// Default seconds a connection stays open without a verified request.
pub const DEFAULT_IDLE_S: f64 = 30.0;
/// Default seconds an answer may wait for the client to read it.
pub const DEFAULT_WRITE_TIMEOUT_S: f64 = 5.0;
/// Pause after a failed accept (EMFILE and friends), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connection-level limits.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Most connections from one source address (0 = no limit).
    pub max_per_source: usize,
    /// Closes a connection this long after it opened or last presented a
    /// verified request (zero = never).
    pub idle: Duration,
    /// Fails a connection whose client leaves an answer unread this long (zero = never).
    pub write_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// One open connection, as the request handlers see it.
pub struct Conn {
    id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Milliseconds after the registry's epoch of the last verified request (0 = none yet).
    verified_ms: AtomicU64,
    opened_ms: u64,
    epoch: Instant,
    /// Tells the connection's task to drop it now (evicted).
    kill: tokio::sync::Notify,
}

impl Conn {
    /// A request on this connection passed the signature check.
    pub fn mark_verified(&self) {
        self.verified_ms
            .store(ms_since(self.epoch).max(1), Ordering::Relaxed);
    }

    fn verified(&self) -> bool {
        self.verified_ms.load(Ordering::Relaxed) != 0
    }

    /// When the idle rule closes this connection.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        let last = self.verified_ms.load(Ordering::Relaxed).max(self.opened_ms);
        self.epoch + Duration::from_millis(last) + idle
    }

    /// A connection for tests and tools that call handlers directly.
    pub fn detached(peer: SocketAddr) -> Conn {
        Conn {
            id: 0,
            peer,
            verified_ms: AtomicU64::new(0),
            opened_ms: 0,
            epoch: Instant::now(),
            kill: tokio::sync::Notify::new(),
        }
    }
}

fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis().min(u64::MAX as u128) as u64
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source already holds its share.
    PerSource,
    /// At the cap, and every open connection has a verified request.
    Full,
}

/// What an admission did.
pub struct Admission {
    pub conn: Arc<Conn>,
    /// An unverified connection was closed to make room.
    pub evicted: bool,
}

#[derive(Default)]
struct Table {
    live: BTreeMap<u64, Arc<Conn>>,
    per_source: HashMap<IpAddr, usize>,
    next: u64,
}

/// The open connections: counts per source, and who gives way at the cap.
pub struct Registry {
    table: Mutex<Table>,
    epoch: Instant,
    max: usize,
    max_per_source: usize,
}

impl Registry {
    pub fn new(max: usize, max_per_source: usize) -> Registry {
        Registry {
            table: Mutex::new(Table::default()),
            epoch: Instant::now(),
            max: max.max(1),
            max_per_source: if max_per_source == 0 {
                usize::MAX
            } else {
                max_per_source
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Lets a connection from `peer` in, making room if needed.
    pub fn admit(&self, peer: SocketAddr) -> Result<Admission, Refused> {
        let mut t = self.lock();
        let ip = peer.ip();
        if t.per_source.get(&ip).copied().unwrap_or(0) >= self.max_per_source {
            return Err(Refused::PerSource);
        }
        let mut evicted = false;
        if t.live.len() >= self.max {
            // A connection without a verified request gives way: the oldest
            // of the source holding the most connections, else the oldest.
            let hog = t
                .per_source
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(ip, _)| *ip);
            let unverified = || t.live.values().filter(|c| !c.verified());
            let victim = unverified()
                .find(|c| Some(c.peer.ip()) == hog)
                .or_else(|| unverified().next())
                .map(|c| c.id)
                .ok_or(Refused::Full)?;
            if let Some(c) = t.live.remove(&victim) {
                forget_source(&mut t.per_source, c.peer.ip());
                c.kill.notify_one();
                evicted = true;
            }
        }
        t.next += 1;
        let conn = Arc::new(Conn {
            id: t.next,
            peer,
            verified_ms: AtomicU64::new(0),
            opened_ms: ms_since(self.epoch),
            epoch: self.epoch,
            kill: tokio::sync::Notify::new(),
        });
        t.live.insert(conn.id, conn.clone());
        *t.per_source.entry(ip).or_insert(0) += 1;
        Ok(Admission { conn, evicted })
    }

    /// The connection closed (a no-op if it was evicted).
    pub fn release(&self, c: &Conn) {
        let mut t = self.lock();
        if t.live.remove(&c.id).is_some() {
            forget_source(&mut t.per_source, c.peer.ip());
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn forget_source(m: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = m.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

/// How a connection ended, for the caller's metrics.
#[derive(Debug)]
pub enum Ended {
    /// hyper finished it (client closed, or graceful close done).
    Closed,
    /// hyper reported an error (timeouts, bad HTTP, unread answers).
    Error(hyper::Error),
    /// Dropped to make room for a newcomer.
    Evicted,
    /// Still open after the grace period of a graceful close.
    Abandoned,
}

/// What a server hands the accept loop.
pub trait Service: Send + Sync + 'static {
    /// The answer to one request on connection `conn`.
    fn call(
        self: Arc<Self>,
        conn: Arc<Conn>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> impl Future<
        Output = Result<
            hyper::Response<http_body_util::Full<bytes::Bytes>>,
            std::convert::Infallible,
        >,
    > + Send
           + 'static;

    /// A connection was refused, evicted or ended.
    fn connection_event(&self, _event: &Event) {}
}

/// Connection events, for metrics and logs.
#[derive(Debug)]
pub enum Event {
    Refused(Refused),
    Evicted,
    IdleClosed,
    Ended(Ended),
}

/// Accepts connections until `stop` resolves, then closes them gracefully.
pub async fn serve<S: Service>(
    listener: tokio::net::TcpListener,
    svc: Arc<S>,
    lim: ConnLimits,
    registry: Arc<Registry>,
    stop: impl Future<Output = ()>,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};

    // Named in the last log line, since the axon port and the operator
    // listener each run this loop.
    let local = listener.local_addr().ok();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout((!lim.header_timeout.is_zero()).then_some(lim.header_timeout))
        .max_header_size(lim.max_header_bytes)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a clone; recv() ends when all are gone.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let adm = match registry.admit(peer) {
            Ok(a) => a,
            Err(r) => {
                svc.connection_event(&Event::Refused(r));
                tracing::debug!(%peer, "connection refused: {r:?}");
                drop(stream);
                continue;
            }
        };
        if adm.evicted {
            svc.connection_event(&Event::Evicted);
        }
        let _ = stream.set_nodelay(true);
        let conn = adm.conn;
        let io = TokioIo::new(WriteDeadline::new(stream, Some(lim.write_timeout)));
        let (svc2, c2) = (svc.clone(), conn.clone());
        let service = hyper::service::service_fn(move |req| svc2.clone().call(c2.clone(), req));
        let http = builder.serve_connection(io, service);
        let (svc3, reg, mut closing, alive) = (
            svc.clone(),
            registry.clone(),
            closing_rx.clone(),
            alive_tx.clone(),
        );
        let (idle, grace) = (lim.idle, lim.shutdown_grace);
        tokio::spawn(async move {
            let ended = drive(http, &conn, idle, grace, &mut closing, &*svc3).await;
            reg.release(&conn);
            if let Ended::Error(e) = &ended {
                tracing::debug!(peer = %conn.peer, "connection ended: {e}");
            }
            svc3.connection_event(&Event::Ended(ended));
            drop(alive);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    match local {
        Some(addr) => tracing::info!(%addr, "all connections closed"),
        None => tracing::info!("all connections closed"),
    }
}

/// Runs one connection under the idle rule, eviction and shutdown.
async fn drive<I, Sv, S>(
    http: hyper::server::conn::http1::Connection<I, Sv>,
    conn: &Conn,
    idle: Duration,
    grace: Duration,
    closing: &mut tokio::sync::watch::Receiver<bool>,
    svc: &S,
) -> Ended
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    Sv: hyper::service::HttpService<hyper::body::Incoming>,
    Sv::ResBody: 'static,
    <Sv::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S: Service,
{
    tokio::pin!(http);
    let far = Duration::from_secs(86_400 * 365);
    let idle_on = !idle.is_zero();
    // When a graceful close was asked for, and how long it may take.
    let mut give_up: Option<tokio::time::Instant> = None;
    if *closing.borrow() {
        http.as_mut().graceful_shutdown();
        give_up = Some(tokio::time::Instant::now() + grace);
    }
    loop {
        let idle_at = if idle_on && give_up.is_none() {
            conn.idle_deadline(idle)
        } else {
            Instant::now() + far
        };
        let give_up_at = give_up.unwrap_or_else(|| tokio::time::Instant::now() + far);
        tokio::select! {
            r = http.as_mut() => return match r {
                Ok(()) => Ended::Closed,
                Err(e) => Ended::Error(e),
            },
            _ = conn.kill.notified() => return Ended::Evicted,
            _ = tokio::time::sleep_until(idle_at.into()), if idle_on && give_up.is_none() => {
                // A verified request may have moved the deadline meanwhile.
                if conn.idle_deadline(idle) <= Instant::now() {
                    svc.connection_event(&Event::IdleClosed);
                    http.as_mut().graceful_shutdown();
                    give_up = Some(tokio::time::Instant::now() + grace);
                }
            }
            _ = closing.changed(), if give_up.is_none() => {
                http.as_mut().graceful_shutdown();
                give_up = Some(tokio::time::Instant::now() + grace);
            }
            _ = tokio::time::sleep_until(give_up_at), if give_up.is_some() => return Ended::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    #[test]
    fn per_source_cap() {
        let r = Registry::new(10, 2);
        let a = r.admit(peer("10.0.0.1", 1)).unwrap();
        let _b = r.admit(peer("10.0.0.1", 2)).unwrap();
        assert_eq!(r.admit(peer("10.0.0.1", 3)).err(), Some(Refused::PerSource));
        assert!(r.admit(peer("10.0.0.2", 1)).is_ok());
        r.release(&a.conn);
        assert!(r.admit(peer("10.0.0.1", 4)).is_ok());
    }

    #[test]
    fn at_the_cap_the_oldest_unverified_gives_way() {
        let r = Registry::new(3, 0);
        let v = r.admit(peer("10.0.0.9", 1)).unwrap().conn;
        v.mark_verified();
        let a = r.admit(peer("10.0.0.1", 1)).unwrap().conn;
        let b = r.admit(peer("10.0.0.1", 2)).unwrap().conn;
        let c = r.admit(peer("10.0.0.2", 1)).unwrap();
        assert!(c.evicted);
        assert_eq!(r.len(), 3);
        // `a` was the oldest unverified one of the biggest source: gone; the
        // validator stays.
        let ids: Vec<u64> = r.lock().live.keys().copied().collect();
        assert_eq!(ids, vec![v.id, b.id, c.conn.id]);
        // Releasing an evicted connection changes nothing.
        r.release(&a);
        assert_eq!(r.len(), 3);
        b.mark_verified();
        c.conn.mark_verified();
        assert_eq!(r.admit(peer("10.0.0.3", 1)).err(), Some(Refused::Full));
    }

    #[test]
    fn the_biggest_source_gives_way_before_a_newcomer_elsewhere() {
        let r = Registry::new(4, 0);
        let lone = r.admit(peer("10.0.0.1", 1)).unwrap().conn;
        let hogs: Vec<_> = (0..3)
            .map(|i| r.admit(peer("10.0.0.2", i)).unwrap().conn)
            .collect();
        // Each new hog connection evicts an older hog, never the lone one.
        for i in 10..20 {
            assert!(r.admit(peer("10.0.0.2", i)).unwrap().evicted);
            assert!(r.lock().live.contains_key(&lone.id));
        }
        assert!(!r.lock().live.contains_key(&hogs[0].id));
    }
}
