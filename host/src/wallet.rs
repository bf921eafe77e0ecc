//! The miner's and the probe's hotkey, read from standard bittensor wallet files.
//!
//! A wallet hotkey lives at `{wallet.path}/{wallet.name}/hotkeys/{wallet.hotkey}`
//! as JSON (AXON.md §11). The miner never signs, so serving needs only the
//! public key: `ss58Address` is enough, and `publicKey`/`accountId` or a secret
//! are fallbacks. The probe signs, so it derives the keypair from
//! `secretPhrase`, `secretSeed` or `privateKey`, in Python's order, and checks
//! that it matches the stored address.

use crate::ss58;
use anyhow::{anyhow, bail, Context, Result};
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey, SecretKey};
use std::path::{Path, PathBuf};

/// bittensor's default wallet directory, relative to the home directory.
pub const DEFAULT_WALLET_DIR: &str = "~/.bittensor/wallets";
/// Largest hotkey file we read; real ones are under 1 KiB.
const MAX_KEYFILE_BYTES: u64 = 64 * 1024;
/// Byte length of a mini secret (`secretSeed`).
const SEED_LEN: usize = 32;
/// Byte length of a schnorrkel secret key (`privateKey`).
const PRIVATE_KEY_LEN: usize = 64;

/// A hotkey: its address and public key, and the keypair when one is known.
pub struct Hotkey {
    pub ss58: String,
    pub public: [u8; ss58::PUBKEY_LEN],
    pub keypair: Option<Keypair>,
}

impl Hotkey {
    /// A fresh random hotkey (for `--dev`); it exists only in memory.
    pub fn generate() -> Hotkey {
        Hotkey::from_keypair(Keypair::generate())
    }

    /// Wraps a keypair.
    pub fn from_keypair(kp: Keypair) -> Hotkey {
        let public = kp.public.to_bytes();
        Hotkey {
            ss58: ss58::encode(&public),
            public,
            keypair: Some(kp),
        }
    }

    /// `secretSeed`: a 32-byte mini secret, expanded as Substrate does.
    pub fn from_seed_hex(seed_hex: &str) -> Result<Hotkey> {
        let bytes = decode_hex_exact::<SEED_LEN>(seed_hex).context("secretSeed")?;
        let mini = MiniSecretKey::from_bytes(&bytes).map_err(|e| anyhow!("secretSeed: {e}"))?;
        Ok(Hotkey::from_keypair(
            mini.expand_to_keypair(ExpansionMode::Ed25519),
        ))
    }

    /// `privateKey`: 64 bytes in schnorrkel's canonical encoding.
    pub fn from_private_key_hex(key_hex: &str) -> Result<Hotkey> {
        let bytes = decode_hex_exact::<PRIVATE_KEY_LEN>(key_hex).context("privateKey")?;
        let sk = SecretKey::from_bytes(&bytes).map_err(|e| anyhow!("privateKey: {e}"))?;
        Ok(Hotkey::from_keypair(sk.to_keypair()))
    }

    /// `secretPhrase`: a BIP-39 mnemonic, turned into a mini secret the
    /// Substrate way (PBKDF2 over the *entropy*, not the phrase), no password.
    pub fn from_phrase(phrase: &str) -> Result<Hotkey> {
        let m = bip39::Mnemonic::parse_normalized(phrase.trim())
            .map_err(|e| anyhow!("secretPhrase: {e}"))?;
        let mini = substrate_bip39::mini_secret_from_entropy(&m.to_entropy(), "")
            .map_err(|e| anyhow!("secretPhrase: {e:?}"))?;
        Ok(Hotkey::from_keypair(
            mini.expand_to_keypair(ExpansionMode::Ed25519),
        ))
    }

    /// An address only (no signing possible).
    pub fn from_ss58(addr: &str) -> Result<Hotkey> {
        let public = ss58::decode_key(addr).map_err(|e| anyhow!("{addr:?}: {e}"))?;
        Ok(Hotkey {
            ss58: ss58::encode(&public),
            public,
            keypair: None,
        })
    }
}

fn decode_hex_exact<const N: usize>(s: &str) -> Result<[u8; N]> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    if h.len() != 2 * N {
        bail!("expected {N} bytes of hex, got {} characters", h.len());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(h, &mut out).map_err(|e| anyhow!("bad hex: {e}"))?;
    Ok(out)
}

/// Expands a leading `~` to `$HOME`.
pub fn expand_home(p: &str) -> PathBuf {
    if let Some(rest) = p
        .strip_prefix("~/")
        .or(if p == "~" { Some("") } else { None })
    {
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(rest);
        }
    }
    PathBuf::from(p)
}

/// Path of a hotkey file.
pub fn hotkey_path(wallet_path: &str, name: &str, hotkey: &str) -> PathBuf {
    expand_home(wallet_path)
        .join(name)
        .join("hotkeys")
        .join(hotkey)
}

fn read_keyfile(path: &Path) -> Result<serde_json::Value> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("hotkey file {}", path.display()))?;
    if meta.len() > MAX_KEYFILE_BYTES {
        bail!(
            "hotkey file {} is {} bytes; not a hotkey",
            path.display(),
            meta.len()
        );
    }
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if raw.starts_with(b"$NACL") || raw.starts_with(b"$BTWALLET") || raw.starts_with(b"$ANSIBLE") {
        bail!(
            "hotkey file {} is encrypted; bittensor hotkeys are normally stored unencrypted \
             (regenerate it with `btcli wallet regen_hotkey` without a password)",
            path.display()
        );
    }
    serde_json::from_slice(&raw).with_context(|| {
        format!(
            "hotkey file {} is not bittensor keyfile JSON",
            path.display()
        )
    })
}

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(|x| x.as_str())
        .filter(|s| !s.is_empty())
}

/// Derives a keypair from the secrets in a keyfile, in Python's order.
fn keypair_from_json(v: &serde_json::Value) -> Result<Option<Hotkey>> {
    if let Some(p) = str_field(v, "secretPhrase") {
        return Hotkey::from_phrase(p).map(Some);
    }
    if let Some(s) = str_field(v, "secretSeed") {
        return Hotkey::from_seed_hex(s).map(Some);
    }
    if let Some(k) = str_field(v, "privateKey") {
        return Hotkey::from_private_key_hex(k).map(Some);
    }
    Ok(None)
}

/// Parses a keyfile's JSON. With `need_secret`, the keypair must be derivable;
/// otherwise the address alone suffices. When both an address and a secret are
/// present they must agree.
pub fn hotkey_from_json(v: &serde_json::Value, need_secret: bool) -> Result<Hotkey> {
    let stored = if let Some(a) = str_field(v, "ss58Address") {
        Some(Hotkey::from_ss58(a).context("ss58Address")?)
    } else if let Some(p) = str_field(v, "publicKey").or_else(|| str_field(v, "accountId")) {
        let public = decode_hex_exact::<{ ss58::PUBKEY_LEN }>(p).context("publicKey")?;
        Some(Hotkey {
            ss58: ss58::encode(&public),
            public,
            keypair: None,
        })
    } else {
        None
    };
    if !need_secret {
        if let Some(h) = stored {
            return Ok(h);
        }
    }
    let derived = keypair_from_json(v)?;
    match (stored, derived) {
        (Some(s), Some(d)) if s.public != d.public => bail!(
            "keyfile secret gives {} but its ss58Address says {}",
            d.ss58,
            s.ss58
        ),
        (_, Some(d)) => Ok(d),
        (Some(s), None) if !need_secret => Ok(s),
        _ => bail!("keyfile has no secretPhrase, secretSeed or privateKey"),
    }
}

/// Loads a hotkey file; see [`hotkey_from_json`].
pub fn load_hotkey(path: &Path, need_secret: bool) -> Result<Hotkey> {
    let v = read_keyfile(path)?;
    hotkey_from_json(&v, need_secret).with_context(|| format!("hotkey file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Substrate's well-known development phrase; //Alice-style derivation is
    // not supported (wallet files never use it), but the root key is public.
    const DEV_PHRASE: &str =
        "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
    // sp-core: the root of DEV_PHRASE without derivation.
    const DEV_ROOT_SS58: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";

    #[test]
    fn phrase_matches_substrate_root() {
        let h = Hotkey::from_phrase(DEV_PHRASE).unwrap();
        assert_eq!(h.ss58, DEV_ROOT_SS58);
    }

    #[test]
    fn seed_and_private_key_agree() {
        let seed = "0x".to_string() + &"11".repeat(32);
        let a = Hotkey::from_seed_hex(&seed).unwrap();
        let sk = a.keypair.as_ref().unwrap().secret.to_bytes();
        let b = Hotkey::from_private_key_hex(&hex::encode(sk)).unwrap();
        assert_eq!(a.public, b.public);
        assert_eq!(a.ss58, b.ss58);
    }

    #[test]
    fn keyfile_json_rules() {
        let seed = "22".repeat(32);
        let h = Hotkey::from_seed_hex(&seed).unwrap();
        let full = serde_json::json!({"secretSeed": format!("0x{seed}"), "ss58Address": h.ss58});
        assert_eq!(hotkey_from_json(&full, true).unwrap().public, h.public);
        let addr_only = serde_json::json!({"ss58Address": h.ss58});
        assert!(hotkey_from_json(&addr_only, false)
            .unwrap()
            .keypair
            .is_none());
        assert!(hotkey_from_json(&addr_only, true).is_err());
        let pk_only = serde_json::json!({"publicKey": format!("0x{}", hex::encode(h.public))});
        assert_eq!(hotkey_from_json(&pk_only, false).unwrap().ss58, h.ss58);
        let other = Hotkey::generate();
        let wrong = serde_json::json!({"secretSeed": seed, "ss58Address": other.ss58});
        assert!(hotkey_from_json(&wrong, true).is_err());
    }

    #[test]
    fn loads_from_disk() {
        let dir = std::env::temp_dir().join(format!("cm-wallet-test-{}", std::process::id()));
        let hk = dir.join("w").join("hotkeys");
        std::fs::create_dir_all(&hk).unwrap();
        let h = Hotkey::from_seed_hex(&"33".repeat(32)).unwrap();
        let body = serde_json::json!({"secretSeed": "0x".to_string() + &"33".repeat(32),
            "ss58Address": h.ss58, "cryptoType": 1});
        std::fs::write(hk.join("h"), body.to_string()).unwrap();
        let p = hotkey_path(dir.to_str().unwrap(), "w", "h");
        assert_eq!(load_hotkey(&p, true).unwrap().ss58, h.ss58);
        std::fs::write(hk.join("enc"), b"$NACL\x00\x01").unwrap();
        let e = load_hotkey(&hk.join("enc"), false).err().unwrap();
        assert!(format!("{e:#}").contains("encrypted"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
