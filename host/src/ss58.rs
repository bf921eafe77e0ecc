//! SS58 addresses, the way Bittensor writes hotkeys.
//!
//! Only the single-byte prefix form is decoded (prefixes 0..=63), because
//! that is all a Python dendrite ever sends (prefix 42, AXON.md §11). The
//! decoder is strict about length and checksum and never panics: the hotkey
//! header is attacker-controlled and is decoded before any signature work.

use blake2::{Blake2b512, Digest};
use core::fmt;

/// Bittensor's network prefix.
pub const BITTENSOR_PREFIX: u8 = 42;
/// sr25519 public key length.
pub const PUBKEY_LEN: usize = 32;
/// Checksum bytes appended after prefix and key.
const CHECKSUM_LEN: usize = 2;
/// Decoded length: prefix byte, key, checksum.
const PAYLOAD_LEN: usize = 1 + PUBKEY_LEN + CHECKSUM_LEN;
/// Largest prefix expressible in the one-byte form.
const MAX_SIMPLE_PREFIX: u8 = 63;
/// Longest string we bother to decode (48 characters for 35 bytes).
const MAX_ADDRESS_CHARS: usize = 64;
/// Domain separator of the SS58 checksum hash.
const CHECKSUM_DOMAIN: &[u8] = b"SS58PRE";

/// Why an address did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ss58Error {
    /// Not base58, or too long to be an address.
    BadBase58,
    /// Decoded to the wrong number of bytes.
    BadLength,
    /// Two-byte prefixes (64..) are not used by Bittensor.
    UnsupportedPrefix,
    /// The blake2b checksum does not match.
    BadChecksum,
}

impl fmt::Display for Ss58Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ss58Error::BadBase58 => "Invalid SS58 address: not base58",
            Ss58Error::BadLength => "Invalid SS58 address: Length is bad",
            Ss58Error::UnsupportedPrefix => "Invalid SS58 address: unsupported prefix",
            Ss58Error::BadChecksum => "Invalid SS58 address: Invalid checksum",
        })
    }
}

impl std::error::Error for Ss58Error {}

fn checksum(prefix: u8, key: &[u8; PUBKEY_LEN]) -> [u8; CHECKSUM_LEN] {
    let mut h = Blake2b512::new();
    h.update(CHECKSUM_DOMAIN);
    h.update([prefix]);
    h.update(key);
    let d = h.finalize();
    [d[0], d[1]]
}

/// Encodes a public key with the Bittensor prefix.
pub fn encode(key: &[u8; PUBKEY_LEN]) -> String {
    encode_with_prefix(BITTENSOR_PREFIX, key)
}

/// Encodes a public key with any one-byte prefix (0..=63).
pub fn encode_with_prefix(prefix: u8, key: &[u8; PUBKEY_LEN]) -> String {
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[0] = prefix;
    payload[1..1 + PUBKEY_LEN].copy_from_slice(key);
    payload[1 + PUBKEY_LEN..].copy_from_slice(&checksum(prefix, key));
    bs58::encode(payload).into_string()
}

/// Decodes an address into (prefix, public key). Any one-byte prefix is
/// accepted, as sp-core's `from_ss58check` accepts any known network.
pub fn decode(addr: &str) -> Result<(u8, [u8; PUBKEY_LEN]), Ss58Error> {
    if addr.len() > MAX_ADDRESS_CHARS {
        return Err(Ss58Error::BadBase58);
    }
    let mut buf = [0u8; MAX_ADDRESS_CHARS];
    let n = bs58::decode(addr)
        .onto(&mut buf[..])
        .map_err(|_| Ss58Error::BadBase58)?;
    if n != PAYLOAD_LEN {
        return Err(Ss58Error::BadLength);
    }
    let prefix = buf[0];
    if prefix > MAX_SIMPLE_PREFIX {
        return Err(Ss58Error::UnsupportedPrefix);
    }
    let mut key = [0u8; PUBKEY_LEN];
    key.copy_from_slice(&buf[1..1 + PUBKEY_LEN]);
    if buf[1 + PUBKEY_LEN..PAYLOAD_LEN] != checksum(prefix, &key) {
        return Err(Ss58Error::BadChecksum);
    }
    Ok((prefix, key))
}

/// Decodes an address and returns only its public key.
pub fn decode_key(addr: &str) -> Result<[u8; PUBKEY_LEN], Ss58Error> {
    decode(addr).map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const ALICE_HEX: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const BOB_HEX: &str = "8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48";

    #[test]
    fn alice_and_bob_round_trip() {
        for (addr, hexkey) in [(ALICE, ALICE_HEX), (BOB, BOB_HEX)] {
            let (prefix, key) = decode(addr).unwrap();
            assert_eq!(prefix, BITTENSOR_PREFIX);
            assert_eq!(hex::encode(key), hexkey);
            assert_eq!(encode(&key), addr);
        }
    }

    #[test]
    fn rejects_corruption() {
        // One changed character breaks the checksum (or the length).
        let mut bad = ALICE.to_string();
        bad.replace_range(10..11, if &ALICE[10..11] == "a" { "b" } else { "a" });
        assert!(decode(&bad).is_err());
        assert_eq!(decode(""), Err(Ss58Error::BadLength));
        assert_eq!(decode("0OIl"), Err(Ss58Error::BadBase58));
        assert_eq!(decode(&ALICE[..40]), Err(Ss58Error::BadLength));
        assert_eq!(decode(&"5".repeat(500)), Err(Ss58Error::BadBase58));
    }

    #[test]
    fn other_prefix_round_trips() {
        let key = decode_key(ALICE).unwrap();
        let polkadot = encode_with_prefix(0, &key);
        assert_eq!(decode(&polkadot).unwrap(), (0, key));
    }
}
