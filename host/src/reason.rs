//! Every way a request can end, with its HTTP status and metric label.
//!
//! One enum is the single source for the status code a failure answers with,
//! the label it is counted under, and the prefix its message carries, so the
//! code, the metrics and the README's table cannot drift apart. Codes follow
//! the Python axon (AXON.md §6) where a dendrite cares (401, 403, 404); for
//! malformed input we answer 400 where Python's accidental 500 would hide
//! whose fault it was, and 413/429/503 for limits Python does not have.

/// Why a request was refused (or `Ok`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Unknown path.
    NotFound,
    /// Known path, wrong method.
    MethodNotAllowed,
    /// Declared or actual body larger than the cap.
    BodyTooLarge,
    /// The body did not arrive within the body timeout.
    BodyTimeout,
    /// The connection failed while reading the body.
    BodyRead,
    /// A header that must parse (`timeout`, `bt_header_dendrite_version`, ...) did not.
    BadHeader,
    /// An authentication header is absent.
    MissingAuth,
    /// `bt_header_dendrite_hotkey` is not a valid SS58 address.
    BadHotkey,
    /// The caller is not on the allow-list.
    Blacklisted,
    /// Too many requests in flight for this caller's stake.
    Overloaded,
    /// The caller's token bucket is empty.
    RateLimited,
    /// First nonce of a `hotkey:uuid` older than the window.
    NonceStale,
    /// Nonce not greater than the last accepted one (a replay).
    NonceReplay,
    /// Nonce too far in the future.
    NonceFuture,
    /// Signature not `0x` + 128 hex, or not a valid sr25519 signature.
    SignatureMalformed,
    /// Signature does not verify over the expected message.
    SignatureMismatch,
    /// `computed_body_hash` is not SHA3-256("").
    BodyHash,
    /// btauth/1: not signed for our hotkey, or for no receiver.
    WrongReceiver,
    /// Both the axon and the btauth/1 authentication headers.
    MixedAuth,
    /// Body is not a JSON object.
    BadJson,
    /// Features missing or invalid.
    BadFeatures,
    /// Our own failure (should not happen).
    Internal,
}

impl Reason {
    /// All reasons, in metric order.
    pub const ALL: [Reason; 22] = [
        Reason::NotFound,
        Reason::MethodNotAllowed,
        Reason::BodyTooLarge,
        Reason::BodyTimeout,
        Reason::BodyRead,
        Reason::BadHeader,
        Reason::MissingAuth,
        Reason::BadHotkey,
        Reason::Blacklisted,
        Reason::Overloaded,
        Reason::RateLimited,
        Reason::NonceStale,
        Reason::NonceReplay,
        Reason::NonceFuture,
        Reason::SignatureMalformed,
        Reason::SignatureMismatch,
        Reason::BodyHash,
        Reason::WrongReceiver,
        Reason::MixedAuth,
        Reason::BadJson,
        Reason::BadFeatures,
        Reason::Internal,
    ];
    pub const COUNT: usize = Reason::ALL.len();

    /// Index into per-reason arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// HTTP status (and `bt_header_axon_status_code`).
    pub fn status(self) -> u16 {
        match self {
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::BodyTooLarge => 413,
            Reason::BodyTimeout => 408,
            Reason::BodyRead
            | Reason::BadHeader
            | Reason::BodyHash
            | Reason::MixedAuth
            | Reason::BadJson
            | Reason::BadFeatures => 400,
            Reason::MissingAuth
            | Reason::BadHotkey
            | Reason::NonceStale
            | Reason::NonceReplay
            | Reason::NonceFuture
            | Reason::SignatureMalformed
            | Reason::SignatureMismatch
            | Reason::WrongReceiver => 401,
            Reason::Blacklisted => 403,
            Reason::RateLimited => 429,
            Reason::Overloaded => 503,
            Reason::Internal => 500,
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::NotFound => "not_found",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyTimeout => "body_timeout",
            Reason::BodyRead => "body_read",
            Reason::BadHeader => "bad_header",
            Reason::MissingAuth => "missing_auth_header",
            Reason::BadHotkey => "bad_hotkey",
            Reason::Blacklisted => "blacklisted",
            Reason::Overloaded => "overloaded",
            Reason::RateLimited => "rate_limited",
            Reason::NonceStale => "nonce_stale",
            Reason::NonceReplay => "nonce_replay",
            Reason::NonceFuture => "nonce_future",
            Reason::SignatureMalformed => "signature_malformed",
            Reason::SignatureMismatch => "signature_mismatch",
            Reason::BodyHash => "body_hash",
            Reason::WrongReceiver => "wrong_receiver",
            Reason::MixedAuth => "mixed_auth",
            Reason::BadJson => "bad_json",
            Reason::BadFeatures => "bad_features",
            Reason::Internal => "internal",
        }
    }

    /// The message prefix, in the Python axon's words where it has them.
    pub fn prefix(self) -> &'static str {
        match self.status() {
            401 => "Not Verified with error: ",
            403 => "Forbidden. Key is blacklisted: ",
            400 => "Bad Request: ",
            408 => "Request Timeout: ",
            413 => "Payload Too Large: ",
            429 => "Too Many Requests: ",
            503 => "Service Unavailable: ",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_labels_unique() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut labels: Vec<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Reason::COUNT);
    }
}
