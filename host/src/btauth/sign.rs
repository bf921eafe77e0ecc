//! The client half of btauth/1: the headers `http_auth.sign` would send.
//!
//! Kept apart from the verifier so a client (the probe, tests, benches) needs
//! only a key and this one call, and built on the same [`payload`] function
//! the server verifies against, so the two halves cannot drift apart on the
//! signed bytes. Interop with the reference implementation is checked both
//! ways by tests/interop: bittensor 11.3.0's `http_auth.sign` against our
//! server, and this signer against its `http_auth.verify`.

use super::{payload, Scheme, SR25519_CONTEXT};
use crate::ss58;

/// A signing key of either scheme bittensor hotkeys use.
#[derive(Clone, Copy)]
pub enum Key<'a> {
    Sr25519(&'a schnorrkel::Keypair),
    Ed25519(&'a ed25519_dalek::SigningKey),
}

impl Key<'_> {
    pub fn scheme(&self) -> Scheme {
        match self {
            Key::Sr25519(_) => Scheme::Sr25519,
            Key::Ed25519(_) => Scheme::Ed25519,
        }
    }

    /// The signer's address (ss58, bittensor's prefix 42).
    pub fn ss58(&self) -> String {
        match self {
            Key::Sr25519(k) => ss58::encode(&k.public.to_bytes()),
            Key::Ed25519(k) => ss58::encode(&k.verifying_key().to_bytes()),
        }
    }

    fn sign(&self, msg: &[u8]) -> [u8; super::SIGNATURE_LEN] {
        match self {
            Key::Sr25519(k) => k
                .sign(schnorrkel::signing_context(SR25519_CONTEXT).bytes(msg))
                .to_bytes(),
            Key::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(msg).to_bytes()
            }
        }
    }
}

/// What to sign: the request exactly as it will be sent.
pub struct Signing<'a> {
    pub method: &'a str,
    /// Path plus `?query`, exactly as the request line will carry it.
    pub target: &'a str,
    pub body: &'a [u8],
    /// The receiving hotkey (our server requires one).
    pub receiver_ss58: Option<&'a str>,
    /// Nanoseconds since the Unix epoch; a fresh one for every request.
    pub nonce_ns: u64,
}

/// The btauth/1 headers for one request, names spelled as bittensor sends them.
pub fn sign(key: Key<'_>, req: &Signing<'_>) -> Vec<(&'static str, String)> {
    let sender = key.ss58();
    let msg = payload(
        key.scheme(),
        req.method,
        req.target,
        req.body,
        req.nonce_ns,
        &sender,
        req.receiver_ss58,
    );
    let sig = key.sign(&msg);
    let mut h = vec![
        ("X-Bittensor-Version", super::VERSION.to_string()),
        ("X-Bittensor-Hotkey", sender),
        ("X-Bittensor-Nonce", req.nonce_ns.to_string()),
        ("X-Bittensor-Signature", format!("0x{}", hex::encode(sig))),
    ];
    if key.scheme() != Scheme::Sr25519 {
        h.push(("X-Bittensor-Crypto", key.scheme().name().to_string()));
    }
    if let Some(r) = req.receiver_ss58 {
        h.push(("X-Bittensor-Receiver", r.to_string()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::super::{parse, BtauthError, Window};
    use super::*;
    use hyper::header::{HeaderMap, HeaderName, HeaderValue};

    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const NOW: u64 = 1_765_000_000_000_000_000;

    fn to_map(h: &[(&'static str, String)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn round_trip(key: Key<'_>) {
        let body = br#"{"features":{"session_id":"x"}}"#;
        let h = sign(
            key,
            &Signing {
                method: "POST",
                target: "/ConversionSynapse",
                body,
                receiver_ss58: Some(BOB),
                nonce_ns: NOW,
            },
        );
        let m = to_map(&h);
        let r = parse(&m).unwrap();
        assert_eq!(r.scheme, key.scheme());
        r.check_receiver(BOB).unwrap();
        r.check_fresh(&Window::default(), NOW).unwrap();
        r.verify("POST", "/ConversionSynapse", body).unwrap();
        // Any change to what was signed breaks it.
        let mut altered = body.to_vec();
        altered[3] ^= 1;
        assert_eq!(
            r.verify("POST", "/ConversionSynapse", &altered),
            Err(BtauthError::Mismatch)
        );
        assert_eq!(
            r.verify("POST", "/Synapse", body),
            Err(BtauthError::Mismatch)
        );
        assert_eq!(
            r.verify("PUT", "/ConversionSynapse", body),
            Err(BtauthError::Mismatch)
        );
        let mut other = r.clone();
        other.nonce += 1;
        assert_eq!(
            other.verify("POST", "/ConversionSynapse", body),
            Err(BtauthError::Mismatch)
        );
        // Declaring the other scheme does not make the signature pass.
        other = r.clone();
        other.scheme = match r.scheme {
            Scheme::Sr25519 => Scheme::Ed25519,
            Scheme::Ed25519 => Scheme::Sr25519,
        };
        assert!(other.verify("POST", "/ConversionSynapse", body).is_err());
    }

    #[test]
    fn sr25519_signs_what_the_verifier_accepts() {
        let kp = schnorrkel::Keypair::generate();
        round_trip(Key::Sr25519(&kp));
    }

    #[test]
    fn ed25519_signs_what_the_verifier_accepts() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let h = sign(
            Key::Ed25519(&sk),
            &Signing {
                method: "POST",
                target: "/",
                body: b"",
                receiver_ss58: None,
                nonce_ns: 1,
            },
        );
        assert!(h
            .iter()
            .any(|(k, v)| *k == "X-Bittensor-Crypto" && v == "ed25519"));
        assert!(!h.iter().any(|(k, _)| *k == "X-Bittensor-Receiver"));
        round_trip(Key::Ed25519(&sk));
    }
}
