//! The built-in dashboard: `GET /status` (one JSON document) and `GET /`, a
//! page that draws it.
//!
//! An edge node often has no Prometheus or Grafana, and may have no internet
//! either, so everything the page needs is compiled into the binary
//! (`include_str!` of `host/assets/`) and served from the miner's own port:
//! the page, its script and style, and the vendored uPlot chart library
//! with its licence. The page's Content-Security-Policy allows no other
//! origin, so a browser would refuse even an accidental request elsewhere.
//! The page polls `/status` every few seconds; `/status` is `/health` plus
//! the per-validator table ([`crate::accounting`]), the drift comparison and
//! the totals the charts draw, computed when asked, never on the request
//! path. Requests per second over the last minutes come from the accounting
//! rows' rings, so a page opened now shows the last five minutes at once.

use crate::server::{health_json, State};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use std::net::{Ipv4Addr, SocketAddr};

type Resp = Response<Full<Bytes>>;

/// Path of the page.
pub const PAGE_PATH: &str = "/";
/// The vendored uPlot release (npm `uplot`, host/assets/README.md).
pub const UPLOT_VERSION: &str = "1.6.32";
/// The page's policy: nothing but this origin, no inline script or style.
const CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file served as is.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// Whether a browser loads it to show the page (the licence it does not).
    loaded: bool,
}

/// Everything the page loads, and the page itself.
const ASSETS: [Asset; 6] = [
    Asset {
        path: PAGE_PATH,
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
        loaded: true,
    },
    Asset {
        path: "/assets/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dashboard.js"),
        loaded: true,
    },
    Asset {
        path: "/assets/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/dashboard.css"),
        loaded: true,
    },
    Asset {
        path: "/assets/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/uPlot.iife.min.js"),
        loaded: true,
    },
    Asset {
        path: "/assets/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/uPlot.min.css"),
        loaded: true,
    },
    Asset {
        path: "/assets/uPlot.LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../assets/uPlot.LICENSE"),
        loaded: false,
    },
];

/// Bytes a browser downloads to show the page (everything above but the
/// licence), before compression: the figure the README quotes.
pub const PAGE_BYTES: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < ASSETS.len() {
        if ASSETS[i].loaded {
            n += ASSETS[i].body.len();
        }
        i += 1;
    }
    n
};

/// Whether `path` is the page or one of its assets.
pub fn serves(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The page or asset at `path` (a path [`serves`] accepts; anything else
/// gets the page, which cannot happen through the router).
pub fn asset(path: &str) -> Resp {
    let a = ASSETS.iter().find(|a| a.path == path).unwrap_or(&ASSETS[0]);
    let mut r = Response::new(Full::new(Bytes::from_static(a.body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if a.path == PAGE_PATH {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    } else {
        // Compiled in: the same binary always serves the same bytes.
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    }
    r
}

/// `GET /status`: `/health`, then the accounting, the drift comparison and
/// the unix time of the document.
pub fn status(state: &State) -> Resp {
    let mut doc = health_json(state);
    let acc = state.accounting.status(|k| state.stake_of(k));
    if let (Some(d), serde_json::Value::Object(a)) = (doc.as_object_mut(), acc) {
        // /health's `validators` (the allow-list's length) gives its name
        // to the per-validator list here.
        if let Some(n) = d.remove("validators") {
            d.insert("validators_listed".into(), n);
        }
        d.extend(a);
        d.insert("drift".into(), drift_json(state));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_secs_f64())
            .unwrap_or(0.0);
        d.insert("time".into(), now.into());
    }
    let mut r = Response::new(Full::new(Bytes::from(doc.to_string())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// PSI per feature, or null when the drift monitor is off.
fn drift_json(state: &State) -> serde_json::Value {
    let Some(d) = &state.life.drift else {
        return serde_json::Value::Null;
    };
    let features: Vec<_> = d
        .counts
        .rows()
        .into_iter()
        .map(|r| {
            serde_json::json!({"feature": r.name, "samples": r.n, "psi": r.psi, "out_of_range": r.out_of_range})
        })
        .collect();
    serde_json::json!({
        "psi_warn": d.psi_warn,
        "requests": d.requests(),
        "features": features,
    })
}

/// The page's address for the start-up line: the external IP when one is
/// set, else the bound one (loopback when bound to every interface).
pub fn url(bound: SocketAddr, external_ip: Option<Ipv4Addr>) -> String {
    let ip = match (external_ip, bound.ip()) {
        (Some(e), _) => std::net::IpAddr::V4(e),
        (None, ip) if ip.is_unspecified() => std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
        (None, ip) => ip,
    };
    format!("http://{}{PAGE_PATH}", SocketAddr::new(ip, bound.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_only_compiled_in_assets() {
        let page = ASSETS[0].body;
        // Every src/href on the page is one of ours (no CDN, no fonts).
        for attr in ["src=\"", "href=\""] {
            for part in page.split(attr).skip(1) {
                let target = part.split('"').next().unwrap_or("");
                assert!(serves(target), "{attr}{target} is not compiled in");
            }
        }
        assert!(page.contains("id=\"verified-total\""));
        // Our own files name no other origin.
        for a in ASSETS.iter().filter(|a| !a.path.contains("uPlot")) {
            assert!(!a.body.contains("://"), "{} names a URL", a.path);
        }
        assert!(ASSETS[3].body.contains(UPLOT_VERSION));
        assert!(!serves("/assets/"), "no directory listing");
        assert!(!serves("/assets/../Cargo.toml"));
    }

    #[test]
    fn url_names_a_reachable_address() {
        let any: SocketAddr = "0.0.0.0:8091".parse().unwrap();
        assert_eq!(url(any, None), "http://127.0.0.1:8091/");
        assert_eq!(
            url(any, Some(Ipv4Addr::new(203, 0, 113, 9))),
            "http://203.0.113.9:8091/"
        );
        assert_eq!(
            url("10.0.0.2:1".parse().unwrap(), None),
            "http://10.0.0.2:1/"
        );
    }
}
