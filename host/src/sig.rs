//! The dendrite's sr25519 signature: message layout, encoding and checks.
//!
//! A Python dendrite signs `"{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}"`
//! with the Substrate signing context `b"substrate"` (AXON.md §5.1), where
//! `axon_hotkey` is *our own* hotkey. The message is assembled into a stack
//! buffer because every field has a known maximum length; anything longer
//! than that cannot be a real request and is refused before any curve work.
//! This file is the message format and the single check; the server checks
//! through [`crate::sig_batch::KeyCache`], which caches decompressed keys and
//! checks concurrent requests in one batch equation.

use core::fmt;
use schnorrkel::{signing_context, Keypair, PublicKey, Signature};

/// Substrate's signing context, which bittensor-wallet uses.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";
/// sr25519 signature length in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// `0x` followed by the signature in hex.
pub const SIGNATURE_HEX_LEN: usize = 2 + 2 * SIGNATURE_LEN;
/// Longest message we assemble: a u64 nonce (20 digits), two 48-character
/// addresses, a uuid with room to spare, a 64-character hash and 4 dots.
pub const MAX_MESSAGE_LEN: usize = 20 + 48 + 48 + 64 + 64 + 4;
/// Longest `bt_header_dendrite_uuid` we accept (a uuid1 string is 36).
pub const MAX_UUID_LEN: usize = 64;
/// Length of the `computed_body_hash` header (SHA3-256 in hex).
pub const BODY_HASH_HEX_LEN: usize = 64;

/// Why a signature check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigError {
    /// Not `0x` + 128 hex characters.
    BadEncoding,
    /// The bytes are not a valid sr25519 signature (e.g. not canonical).
    Malformed,
    /// The public key bytes are not a valid Ristretto point.
    BadPublicKey,
    /// Well-formed, but it does not verify over the expected message.
    Mismatch,
    /// A message part is longer than any real request could make it.
    MessageTooLong,
}

impl fmt::Display for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigError::BadEncoding => "signature is not 0x followed by 128 hex characters",
            SigError::Malformed => "signature bytes are not a valid sr25519 signature",
            SigError::BadPublicKey => "dendrite hotkey is not a valid sr25519 public key",
            SigError::Mismatch => "Signature mismatch",
            SigError::MessageTooLong => "signed fields are too long",
        })
    }
}

impl std::error::Error for SigError {}

/// The signed message, on the stack.
pub struct Message {
    buf: [u8; MAX_MESSAGE_LEN],
    len: usize,
}

impl Message {
    /// Assembles `nonce.dendrite_hotkey.axon_hotkey.uuid.body_hash`.
    pub fn new(
        nonce: u64,
        dendrite_hotkey: &str,
        axon_hotkey: &str,
        uuid: &str,
        body_hash: &str,
    ) -> Result<Self, SigError> {
        let mut m = Message {
            buf: [0; MAX_MESSAGE_LEN],
            len: 0,
        };
        let mut digits = [0u8; 20];
        m.push(format_u64(nonce, &mut digits))?;
        for part in [dendrite_hotkey, axon_hotkey, uuid, body_hash] {
            m.push(b".")?;
            m.push(part.as_bytes())?;
        }
        Ok(m)
    }

    fn push(&mut self, s: &[u8]) -> Result<(), SigError> {
        let end = self
            .len
            .checked_add(s.len())
            .ok_or(SigError::MessageTooLong)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(SigError::MessageTooLong)?;
        dst.copy_from_slice(s);
        self.len = end;
        Ok(())
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writes `n` in decimal into `out` and returns the digits.
fn format_u64(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

/// Parses `0x` + 128 hex characters (either case) into 64 bytes.
pub fn parse_signature_hex(s: &str) -> Result<[u8; SIGNATURE_LEN], SigError> {
    let hex_part = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or(SigError::BadEncoding)?;
    if hex_part.len() != 2 * SIGNATURE_LEN {
        return Err(SigError::BadEncoding);
    }
    let mut out = [0u8; SIGNATURE_LEN];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| SigError::BadEncoding)?;
    Ok(out)
}

/// Verifies a dendrite signature under the Substrate context.
pub fn verify(pubkey: &[u8; 32], msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> Result<(), SigError> {
    verify_with_context(SIGNING_CONTEXT, pubkey, msg, sig)
}

/// Verifies under an explicit context (tests show a wrong one fails).
pub fn verify_with_context(
    ctx: &[u8],
    pubkey: &[u8; 32],
    msg: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> Result<(), SigError> {
    let pk = PublicKey::from_bytes(pubkey).map_err(|_| SigError::BadPublicKey)?;
    let sig = Signature::from_bytes(sig).map_err(|_| SigError::Malformed)?;
    pk.verify(signing_context(ctx).bytes(msg), &sig)
        .map_err(|_| SigError::Mismatch)
}

/// Signs as a dendrite does and returns `0x` + hex.
pub fn sign_hex(kp: &Keypair, msg: &[u8]) -> String {
    let sig = kp.sign(signing_context(SIGNING_CONTEXT).bytes(msg));
    let mut s = String::with_capacity(SIGNATURE_HEX_LEN);
    s.push_str("0x");
    s.push_str(&hex::encode(sig.to_bytes()));
    s
}

/// AXON.md §5.1: a real bittensor 10.5.0 dendrite signature (//Alice ->
/// //Bob), shared by this module's tests and the batching verifier's.
#[cfg(test)]
pub(crate) mod vectors {
    pub(crate) const NONCE: u64 = 1795626734383137861;
    pub(crate) const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    pub(crate) const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    pub(crate) const UUID: &str = "5c06965a-e8f3-11f1-9a7d-02fc00000001";
    pub(crate) const EMPTY_HASH: &str =
        "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";
    pub(crate) const SIG: &str = "0x6c15c847ea75fffd6941425a8a557cf8ae32d2880726cc56947daa44e077436cbce8ba7874fd8005b96efff21847d99524bd8b5953d684e98d0ce990650d068b";
    pub(crate) const MESSAGE: &str = "1795626734383137861.5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY.5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty.5c06965a-e8f3-11f1-9a7d-02fc00000001.a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";
}

#[cfg(test)]
mod tests {
    use super::vectors::*;
    use super::*;
    use crate::ss58;

    #[test]
    fn message_layout_matches_spec() {
        let m = Message::new(NONCE, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
        assert_eq!(m.as_bytes(), MESSAGE.as_bytes());
        let m0 = Message::new(0, "a", "b", "c", "d").unwrap();
        assert_eq!(m0.as_bytes(), b"0.a.b.c.d");
        let mx = Message::new(u64::MAX, "a", "b", "c", "d").unwrap();
        assert_eq!(mx.as_bytes(), b"18446744073709551615.a.b.c.d");
    }

    #[test]
    fn python_vector_verifies() {
        let pk = ss58::decode_key(ALICE).unwrap();
        let sig = parse_signature_hex(SIG).unwrap();
        assert_eq!(verify(&pk, MESSAGE.as_bytes(), &sig), Ok(()));
    }

    #[test]
    fn changed_nonce_fails() {
        let pk = ss58::decode_key(ALICE).unwrap();
        let sig = parse_signature_hex(SIG).unwrap();
        let m = Message::new(NONCE + 1, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
        assert_eq!(verify(&pk, m.as_bytes(), &sig), Err(SigError::Mismatch));
    }

    #[test]
    fn wrong_context_or_signer_fails() {
        let pk = ss58::decode_key(ALICE).unwrap();
        let sig = parse_signature_hex(SIG).unwrap();
        assert_eq!(
            verify_with_context(b"", &pk, MESSAGE.as_bytes(), &sig),
            Err(SigError::Mismatch)
        );
        let bob = ss58::decode_key(BOB).unwrap();
        assert_eq!(
            verify(&bob, MESSAGE.as_bytes(), &sig),
            Err(SigError::Mismatch)
        );
    }

    #[test]
    fn encoding_errors() {
        assert_eq!(parse_signature_hex(&SIG[2..]), Err(SigError::BadEncoding));
        assert_eq!(parse_signature_hex(&SIG[..128]), Err(SigError::BadEncoding));
        let mut s = SIG.to_string();
        s.replace_range(5..6, "z");
        assert_eq!(parse_signature_hex(&s), Err(SigError::BadEncoding));
        assert!(parse_signature_hex(&SIG.to_uppercase().replacen("0X", "0x", 1)).is_ok());
        let long = "x".repeat(MAX_MESSAGE_LEN);
        assert_eq!(
            Message::new(1, &long, BOB, UUID, EMPTY_HASH).err(),
            Some(SigError::MessageTooLong)
        );
    }

    #[test]
    fn own_signatures_round_trip() {
        let kp = Keypair::generate();
        let m = Message::new(7, ALICE, BOB, UUID, EMPTY_HASH).unwrap();
        let s = sign_hex(&kp, m.as_bytes());
        assert_eq!(s.len(), SIGNATURE_HEX_LEN);
        let sig = parse_signature_hex(&s).unwrap();
        assert_eq!(verify(&kp.public.to_bytes(), m.as_bytes(), &sig), Ok(()));
    }
}
