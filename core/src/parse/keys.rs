//! Which member a key names: a feature, one of the synapse fields the
//! answer rewrites, or something to skip.
//!
//! Keys are compared by their decoded value, as Python's `json` compares
//! them, so `"\u0073ession_id"` is `session_id`. Escapes are rare, so a key
//! without a `\` is looked up as it stands and only an escaped key is
//! decoded (into a small stack buffer: no known name is longer than it).
//!
//! Feature names are the hot part (40 per request). A feature key is first
//! checked against the name that followed the previous feature last time
//! ([`KeyOrder`]; clients keep one order), with two 16-byte compares, and
//! only if that fails is it hashed and looked up in a table built at
//! compile time (`predict/stage/parse` of a 2.2 KB synapse went from 1.85
//! to 1.56 µs with the expected-name check, `cargo bench --bench predict`,
//! 2026-11-26). The expected order is state the caller owns and passes in,
//! never a global: a server keeps one per thread.
//!
//! The same trick covers the other keys a synapse repeats in one order:
//! the top-level fields ([`KeyOrder`] learns which field follows which),
//! the ten keys of the `dendrite` and `axon` blocks (learned the same way:
//! bittensor writes them in declaration order, a sorting JSON writer
//! alphabetically), the two `prediction` keys (expected in declared order)
//! and `session_id` among the features. Each is a compare of the bytes
//! after the opening quote with the name and its closing quote, in place,
//! so a key that matches is never scanned, hashed or `memcmp`ed; any miss
//! (an escape, a longer key, too few bytes left) takes the general path,
//! which gives the same answer. The parent module's docs have the numbers.

use super::fields::TOP_KEYS;
use super::scan::{word_at, Str, WORD};
use crate::schema::{FEATURE_NAMES, N_FEATURES};

/// Name of the session identifier key (a string, not a model input).
pub const SESSION_ID: &str = "session_id";
/// Name of the key holding the features inside a synapse body.
pub const FEATURES_KEY: &str = "features";

/// Top-level synapse members whose values the answer replaces (or checks),
/// in the order the answer appends the ones that are missing.
pub const SLOT_KEYS: [&str; N_SLOTS] = [
    "name",
    "axon",
    "dendrite",
    "prediction",
    "confidence",
    "response_time",
];
/// Number of [`SLOT_KEYS`].
pub const N_SLOTS: usize = 6;
/// Index of `name` in [`SLOT_KEYS`].
pub const SLOT_NAME: usize = 0;
/// Index of `axon`.
pub const SLOT_AXON: usize = 1;
/// Index of `dendrite`.
pub const SLOT_DENDRITE: usize = 2;
/// Index of `prediction`.
pub const SLOT_PREDICTION: usize = 3;
/// Index of `confidence`.
pub const SLOT_CONFIDENCE: usize = 4;
/// Index of `response_time`.
pub const SLOT_RESPONSE_TIME: usize = 5;

/// Keys of a bittensor `TerminalInfo` (the `axon` and `dendrite` blocks);
/// the answer always carries all ten.
pub const TERMINAL_KEYS: [&str; N_TERMINAL] = [
    "status_code",
    "status_message",
    "process_time",
    "ip",
    "port",
    "version",
    "nonce",
    "uuid",
    "hotkey",
    "signature",
];
/// Number of [`TERMINAL_KEYS`].
pub const N_TERMINAL: usize = 10;
/// The first three terminal keys are the ones the answer sets in `axon`.
pub const N_STATUS: usize = 3;

/// What a member's key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Member {
    Feature(usize),
    SessionId,
    Features,
    Slot(usize),
    /// A checked synapse field the answer keeps as it is
    /// (`fields::TOP_KEYS[k]`).
    Checked(usize),
    Other,
}

/// Longest decoded key compared with a known name (longer ones are unknown).
const KEY_BUF: usize = 40;

/// A key's decoded bytes in `buf`, or `None` when it cannot be a known name
/// (too long, or a lone surrogate, which no known name holds).
fn decode<'k>(raw: &[u8], buf: &'k mut [u8; KEY_BUF]) -> Option<&'k [u8]> {
    let mut n = 0;
    let mut i = 0;
    let mut push = |buf: &mut [u8; KEY_BUF], bytes: &[u8]| -> Option<()> {
        buf.get_mut(n..n + bytes.len())?.copy_from_slice(bytes);
        n += bytes.len();
        Some(())
    };
    while let Some(&c) = raw.get(i) {
        if c != b'\\' {
            push(buf, &[c])?;
            i += 1;
            continue;
        }
        let e = *raw.get(i + 1)?;
        i += 2;
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => 0,
            _ => return None,
        };
        if e != b'u' {
            push(buf, &[simple])?;
            continue;
        }
        let hi = hex4(raw.get(i..i + 4)?)?;
        i += 4;
        let cp = match hi {
            0xD800..=0xDBFF => {
                // A pair: `\uD8xx\uDCxx`.
                if raw.get(i..i + 2) != Some(b"\\u") {
                    return None;
                }
                let lo = hex4(raw.get(i + 2..i + 6)?)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return None;
                }
                i += 6;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return None,
            _ => hi,
        };
        let ch = char::from_u32(cp)?;
        let mut utf8 = [0u8; 4];
        push(buf, ch.encode_utf8(&mut utf8).as_bytes())?;
    }
    buf.get(..n)
}

/// Four hex digits (already checked by the string scan) as a number.
fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in h {
        v = (v << 4) | char::from(c).to_digit(16)?;
    }
    Some(v)
}

/// What the key `k` of a member names. `top`: the member is in the
/// top-level object (the synapse fields live only there).
#[inline(always)]
pub(super) fn classify(k: Str<'_>, top: bool) -> Member {
    if k.escaped {
        let mut buf = [0u8; KEY_BUF];
        match decode(k.raw, &mut buf) {
            Some(d) => classify_plain(d, top),
            None => Member::Other,
        }
    } else {
        classify_plain(k.raw, top)
    }
}

#[inline(always)]
fn classify_plain(k: &[u8], top: bool) -> Member {
    if let Some(i) = feature_index(k) {
        return Member::Feature(i);
    }
    if k == SESSION_ID.as_bytes() {
        return Member::SessionId;
    }
    if !top {
        return Member::Other;
    }
    if k == FEATURES_KEY.as_bytes() {
        return Member::Features;
    }
    if let Some(s) = SLOT_KEYS.iter().position(|s| s.as_bytes() == k) {
        return Member::Slot(s);
    }
    match TOP_KEYS.iter().position(|s| s.as_bytes() == k) {
        Some(c) => Member::Checked(c),
        None => Member::Other,
    }
}

/// Index of a terminal key in [`TERMINAL_KEYS`], by decoded value.
pub(super) fn terminal_index(k: Str<'_>) -> Option<usize> {
    name_index(k, &TERMINAL_KEYS)
}

/// Index of the key `k` in `names`, by decoded value.
#[inline(always)]
pub(super) fn name_index(k: Str<'_>, names: &[&str]) -> Option<usize> {
    if !k.escaped {
        return names.iter().position(|t| t.as_bytes() == k.raw);
    }
    let mut buf = [0u8; KEY_BUF];
    let k = decode(k.raw, &mut buf)?;
    names.iter().position(|t| t.as_bytes() == k)
}

/// Slots in the feature-name table (a power of two, over twice [`N_FEATURES`]).
const KEY_SLOTS: usize = 128;
/// Shortest feature name; shorter keys are not looked up.
const MIN_NAME: usize = WORD;

/// Eight bytes of `k` from `at`, little-endian, at compile time (the
/// caller keeps `at + 8 <= k.len()`); same value as [`word_at`].
const fn load8(k: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        k[at],
        k[at + 1],
        k[at + 2],
        k[at + 3],
        k[at + 4],
        k[at + 5],
        k[at + 6],
        k[at + 7],
    ])
}

/// Byte equality of two keys, a word at a time for keys of at least
/// [`WORD`] bytes (the last word overlaps the one before it). Inline, where
/// `==` on slices calls `memcmp`, which cost more than the comparing.
#[inline(always)]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() || n < WORD {
        return n == b.len() && a == b;
    }
    let mut at = 0;
    while at + WORD < n {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += WORD;
    }
    word_at(a, n - WORD) == word_at(b, n - WORD)
}

/// Hash of a key of at least [`MIN_NAME`] bytes from its first and last
/// eight bytes and its length, mixed by one multiply; the top bits index
/// the table.
#[inline(always)]
const fn mix(first: u64, last: u64, n: usize) -> usize {
    let mixed = (first ^ last.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - KEY_SLOTS.trailing_zeros())) as usize
}

/// Feature index + 1 by hash slot (0 = empty), with linear probing.
static KEY_TABLE: [u8; KEY_SLOTS] = build_key_table();

const fn build_key_table() -> [u8; KEY_SLOTS] {
    assert!(KEY_SLOTS.is_power_of_two() && KEY_SLOTS >= 2 * N_FEATURES);
    let mut t = [0u8; KEY_SLOTS];
    let mut i = 0;
    while i < N_FEATURES {
        let k = FEATURE_NAMES[i].as_bytes();
        assert!(k.len() >= MIN_NAME);
        let mut h = mix(load8(k, 0), load8(k, k.len() - WORD), k.len());
        while t[h] != 0 {
            h = (h + 1) & (KEY_SLOTS - 1);
        }
        t[h] = (i + 1) as u8;
        i += 1;
    }
    t
}

/// The schema index of a feature name, if `key` is one.
#[inline]
pub(super) fn feature_index(key: &[u8]) -> Option<usize> {
    if key.len() < MIN_NAME {
        return None;
    }
    let mut h = mix(word_at(key, 0), word_at(key, key.len() - WORD), key.len());
    loop {
        let slot = *KEY_TABLE.get(h)?;
        let i = usize::from(slot).checked_sub(1)?;
        if same_key(FEATURE_NAMES.get(i)?.as_bytes(), key) {
            return Some(i);
        }
        h = (h + 1) & (KEY_SLOTS - 1);
    }
}

/// Bytes compared when checking a key against an expected feature name:
/// the longest name and its closing quote fit.
pub(super) const NAME_PAD: usize = 32;

/// Each feature name followed by `"` and zero padding, for [`KeyOrder`].
static QUOTED_NAMES: [[u8; NAME_PAD]; N_FEATURES] = quoted_padded(FEATURE_NAMES);

/// The order a client sends its features in, learned as requests are read:
/// entry `i` is the feature that followed feature `i` last time (entry
/// [`N_FEATURES`]: the first feature of an object). A hint only: a wrong
/// entry costs a few nanoseconds, never a different result. Starts out as
/// the schema order. Whoever parses owns one (a server thread, the CLI, a
/// bench); [`crate::parse::parse_request`] makes a fresh one per call.
///
/// It also keeps the same kind of hint for the keys of the `axon` and
/// `dendrite` blocks ([`TERMINAL_KEYS`]), which a client writes in one
/// order too (bittensor's declaration order; sorted, from some JSON
/// writers).
#[derive(Clone, Copy, Debug)]
pub struct KeyOrder {
    next: [u8; N_FEATURES + 1],
    /// Entry `t`: the terminal key that followed terminal key `t` last time
    /// (entry [`N_TERMINAL`]: the first key of a block).
    terminal: [u8; N_TERMINAL + 1],
    /// Entry `k`: the synapse field ([`top_name`]) that followed synapse
    /// field `k` at the top level last time (entry [`N_TOP`]: the first).
    top: [u8; N_TOP + 1],
}

impl Default for KeyOrder {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyOrder {
    /// The schema order.
    pub const fn new() -> Self {
        KeyOrder {
            next: in_order(),
            terminal: in_order(),
            // Top-level fields: no order known (a guess of `N_TOP` is none).
            top: [N_TOP as u8; N_TOP + 1],
        }
    }

    /// The synapse field expected at the top level after field `prev`
    /// (`N_TOP`: none yet); `N_TOP` when there is no guess.
    #[inline(always)]
    pub(super) fn top_guess(&self, prev: usize) -> usize {
        hint(&self.top, prev, N_TOP)
    }

    /// Synapse field `k` followed `prev` at the top level.
    #[inline(always)]
    pub(super) fn learn_top(&mut self, prev: usize, k: usize) {
        set_hint(&mut self.top, prev, k);
    }

    /// The terminal key expected after terminal key `prev` (`N_TERMINAL`:
    /// none yet); `N_TERMINAL` when there is no guess.
    #[inline(always)]
    pub(super) fn terminal_guess(&self, prev: usize) -> usize {
        hint(&self.terminal, prev, N_TERMINAL)
    }

    /// Terminal key `t` followed `prev`.
    #[inline(always)]
    pub(super) fn learn_terminal(&mut self, prev: usize, t: usize) {
        set_hint(&mut self.terminal, prev, t);
    }

    /// The feature expected after feature `prev` (`N_FEATURES`: none yet).
    #[inline(always)]
    pub(super) fn guess(&self, prev: usize) -> usize {
        hint(&self.next, prev, N_FEATURES)
    }

    /// Feature `fi` followed `prev`.
    #[inline(always)]
    pub(super) fn learn(&mut self, prev: usize, fi: usize) {
        set_hint(&mut self.next, prev, fi);
    }
}

/// A successor table in declaration order, as [`KeyOrder`] keeps them for
/// `M - 1` keys: entry `i` expects key `i + 1` (the last key's entry,
/// `M - 1`, expects none), and entry `M - 1`, the start, expects key 0.
const fn in_order<const M: usize>() -> [u8; M] {
    let mut t = [0u8; M];
    let mut i = 0;
    while i + 1 < M {
        t[i] = (i + 1) as u8;
        i += 1;
    }
    t
}

/// Entry `prev` of a successor table; `none` past its end.
#[inline(always)]
fn hint(table: &[u8], prev: usize, none: usize) -> usize {
    table.get(prev).map_or(none, |&g| usize::from(g))
}

/// Records that key `k` followed key `prev` (nothing past the table's end).
#[inline(always)]
fn set_hint(table: &mut [u8], prev: usize, k: usize) {
    if let Some(slot) = table.get_mut(prev) {
        *slot = k as u8;
    }
}

/// Number of top-level synapse keys with a [`KeyOrder`] hint: `features`,
/// the [`SLOT_KEYS`] and the checked [`TOP_KEYS`].
pub(super) const N_TOP: usize = 1 + N_SLOTS + TOP_KEYS.len();

/// The top-level synapse keys with a [`KeyOrder`] hint, indexed as
/// [`top_entry`] indexes them: `features`, the slots, the checked fields.
const TOP_NAMES: [&str; N_TOP] = {
    let mut t = [FEATURES_KEY; N_TOP];
    let mut k = 1;
    while k < N_TOP {
        t[k] = if k <= N_SLOTS {
            SLOT_KEYS[k - 1]
        } else {
            TOP_KEYS[k - 1 - N_SLOTS]
        };
        k += 1;
    }
    t
};

/// Top-level synapse key `k` (`features`, the slots, the checked fields, in
/// that order), and what it names.
#[inline(always)]
fn top_entry(k: usize) -> Option<(&'static str, Member)> {
    let member = match k {
        0 => Member::Features,
        _ if k <= N_SLOTS => Member::Slot(k - 1),
        _ => Member::Checked(k - 1 - N_SLOTS),
    };
    TOP_NAMES.get(k).map(|n| (*n, member))
}

/// The index [`top_entry`] gives the member `m` names, if it has one.
#[inline(always)]
pub(super) fn top_name(m: Member) -> Option<usize> {
    match m {
        Member::Features => Some(0),
        Member::Slot(s) => Some(1 + s),
        Member::Checked(c) => Some(1 + N_SLOTS + c),
        _ => None,
    }
}

/// Each top-level synapse key followed by `"` and zero padding.
static QUOTED_TOP: [[u8; NAME_PAD]; N_TOP] = quoted_padded(TOP_NAMES);

/// If `text` (the bytes just past a key's opening quote) begins with the
/// top-level synapse key `k` and its closing quote: the key's length and
/// what it names (what [`classify`] makes of it at the top level). Any doubt
/// (an unknown `k`, fewer than [`NAME_PAD`] bytes left) answers `None`, and
/// the caller reads the key the general way.
#[inline(always)]
pub(super) fn quoted_top(text: &[u8], k: usize) -> Option<(usize, Member)> {
    let (name, member) = top_entry(k)?;
    starts_with_padded(text, QUOTED_TOP.get(k)?, name.len()).then_some((name.len(), member))
}

/// Bytes compared when checking a key against an expected terminal key:
/// the longest ([`TERMINAL_KEYS`]) and its closing quote fit.
const TERMINAL_PAD: usize = 2 * WORD;

/// `name` followed by `"`, as two little-endian words, and the masks of the
/// bytes that count (the name and its quote), for [`starts_with_quoted`].
const fn quoted_words(name: &str) -> ([u64; 2], [u64; 2]) {
    let name = name.as_bytes();
    assert!(name.len() < TERMINAL_PAD);
    let mut t = ([0u64; 2], [0u64; 2]);
    let mut j = 0;
    while j <= name.len() {
        let c = if j < name.len() { name[j] } else { b'"' };
        t.0[j / WORD] |= (c as u64) << (8 * (j % WORD));
        t.1[j / WORD] |= 0xFF << (8 * (j % WORD));
        j += 1;
    }
    t
}

/// Each terminal key as [`quoted_words`] writes it.
static QUOTED_TERMINAL: [([u64; 2], [u64; 2]); N_TERMINAL] = {
    let mut t = [([0u64; 2], [0u64; 2]); N_TERMINAL];
    let mut k = 0;
    while k < N_TERMINAL {
        t[k] = quoted_words(TERMINAL_KEYS[k]);
        k += 1;
    }
    t
};

/// Whether `text` (the bytes just past a key's opening quote) begins with
/// terminal key `t` and its closing quote: two masked word compares. Any
/// doubt (an unknown `t`, fewer than 16 bytes left) answers false, and the
/// caller reads the key the general way.
#[inline(always)]
pub(super) fn is_quoted_terminal(text: &[u8], t: usize) -> bool {
    match QUOTED_TERMINAL.get(t) {
        Some(&quoted) => starts_with_quoted(text, quoted),
        None => false,
    }
}

/// [`SESSION_ID`] and its closing quote, as [`QUOTED_TERMINAL`] holds keys.
static QUOTED_SESSION_ID: ([u64; 2], [u64; 2]) = quoted_words(SESSION_ID);

/// Whether `text` (the bytes just past a key's opening quote) begins with
/// `session_id` and its closing quote (false with fewer than 16 bytes left).
#[inline(always)]
pub(super) fn is_quoted_session_id(text: &[u8]) -> bool {
    starts_with_quoted(text, QUOTED_SESSION_ID)
}

/// Whether the first 16 bytes of `text` agree with `want` where `mask` is
/// set (false with fewer than 16 bytes).
#[inline(always)]
fn starts_with_quoted(text: &[u8], (want, mask): ([u64; 2], [u64; 2])) -> bool {
    let Some(text) = text.get(..TERMINAL_PAD) else {
        return false;
    };
    let (a, b) = (word_at(text, 0), word_at(text, WORD));
    ((a ^ want[0]) & mask[0]) | ((b ^ want[1]) & mask[1]) == 0
}

/// Whether `text` (the bytes just past a key's opening quote) begins with
/// the name of feature `g` and its closing quote. Any doubt (an unknown
/// `g`, fewer than [`NAME_PAD`] bytes left, a longer key, an escape)
/// answers false, and the caller reads the key the general way.
#[inline(always)]
pub(super) fn is_quoted_name(text: &[u8], g: usize) -> bool {
    match (QUOTED_NAMES.get(g), FEATURE_NAMES.get(g)) {
        (Some(want), Some(name)) => starts_with_padded(text, want, name.len()),
        _ => false,
    }
}

/// `names`, each followed by `"` and zero padding to [`NAME_PAD`] bytes,
/// for [`starts_with_padded`].
pub(super) const fn quoted_padded<const N: usize>(names: [&str; N]) -> [[u8; NAME_PAD]; N] {
    let mut t = [[0u8; NAME_PAD]; N];
    let mut k = 0;
    while k < N {
        let name = names[k].as_bytes();
        assert!(name.len() < NAME_PAD);
        let mut j = 0;
        while j < name.len() {
            t[k][j] = name[j];
            j += 1;
        }
        t[k][name.len()] = b'"';
        k += 1;
    }
    t
}

/// Whether `text` (the bytes just past a key's opening quote) begins with
/// the first `len + 1` bytes of `want` (a name of `len` bytes and its
/// quote, from [`quoted_padded`]); false with fewer than [`NAME_PAD`] bytes.
#[inline(always)]
pub(super) fn starts_with_padded(text: &[u8], want: &[u8; NAME_PAD], len: usize) -> bool {
    match text
        .get(..NAME_PAD)
        .and_then(|t| <&[u8; NAME_PAD]>::try_from(t).ok())
    {
        Some(text) => equal_prefix(text, want, len + 1),
        None => false,
    }
}

/// Whether the first `n` (at most [`NAME_PAD`]) bytes of `a` and `b` agree.
#[inline(always)]
fn equal_prefix(a: &[u8; NAME_PAD], b: &[u8; NAME_PAD], n: usize) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        const { assert!(NAME_PAD == 2 * super::sse2::BLOCK) };
        let need = if n >= NAME_PAD {
            u32::MAX
        } else {
            (1u32 << n) - 1
        };
        super::sse2::equal_bytes(a, b) & need == need
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        equal_prefix_words(a, b, n)
    }
}

/// [`equal_prefix`] a word at a time, the last word masked to the bytes
/// still wanted.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn equal_prefix_words(a: &[u8; NAME_PAD], b: &[u8; NAME_PAD], n: usize) -> bool {
    let mut at = 0;
    while at < n.min(NAME_PAD) {
        let left = n - at;
        let mask = if left >= WORD {
            u64::MAX
        } else {
            (1u64 << (8 * left)) - 1
        };
        if (word_at(a, at) ^ word_at(b, at)) & mask != 0 {
            return false;
        }
        at += WORD;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn a_fresh_key_order_expects_the_declaration_orders() {
        let o = KeyOrder::new();
        // Features and terminal keys: from the start, every key in turn, then
        // none after the last.
        let walk = |guess: &dyn Fn(usize) -> usize, n: usize| {
            let mut seen = std::vec::Vec::new();
            let mut k = guess(n);
            while k < n && seen.len() <= n {
                seen.push(k);
                k = guess(k);
            }
            (seen, k)
        };
        let n = N_FEATURES;
        assert_eq!(walk(&|p| o.guess(p), n), ((0..n).collect(), n));
        let n = N_TERMINAL;
        assert_eq!(walk(&|p| o.terminal_guess(p), n), ((0..n).collect(), n));
        // Top-level fields: no guess anywhere.
        assert!((0..=N_TOP).all(|p| o.top_guess(p) == N_TOP));
        // Past the tables: no guess; learning there changes nothing.
        let mut o2 = o;
        o2.learn(N_FEATURES + 1, 3);
        o2.learn_terminal(N_TERMINAL + 1, 3);
        o2.learn_top(N_TOP + 1, 3);
        assert_eq!(o2.guess(N_FEATURES + 1), N_FEATURES);
        assert_eq!(o2.terminal_guess(N_TERMINAL + 1), N_TERMINAL);
        assert_eq!(o2.top_guess(N_TOP + 1), N_TOP);
        assert_eq!(std::format!("{o2:?}"), std::format!("{o:?}"));
    }

    #[test]
    fn every_feature_name_is_found_and_nothing_near_it() {
        for (i, n) in FEATURE_NAMES.iter().enumerate() {
            let n = n.as_bytes();
            assert_eq!(feature_index(n), Some(i));
            let mut k = n.to_vec();
            for j in 0..k.len() {
                let old = k[j];
                k[j] = b'#';
                assert_eq!(feature_index(&k), None);
                k[j] = old;
            }
            k.push(b's');
            assert_eq!(feature_index(&k), None);
            assert_eq!(feature_index(&n[..n.len() - 1]), None);
        }
        for k in [&b"session_id"[..], b"features", b"", b"x", b"hour"] {
            assert_eq!(feature_index(k), None);
        }
    }

    #[test]
    fn quoted_top_keys_are_what_classify_says() {
        for k in 0..N_TOP {
            let (name, member) = top_entry(k).unwrap();
            assert_eq!(top_name(member), Some(k));
            let plain = Str {
                raw: name.as_bytes(),
                escaped: false,
            };
            assert_eq!(classify(plain, true), member, "{name}");
            let mut text = std::format!("{name}\": null, \"some_longer_key\": 1}}").into_bytes();
            for u in 0..=N_TOP {
                let want = (u == k).then_some((name.len(), member));
                assert_eq!(quoted_top(&text, u), want, "{name} as {u}");
            }
            for at in 0..=name.len() {
                let old = text[at];
                text[at] = b'#';
                assert_eq!(quoted_top(&text, k), None, "{name} at {at}");
                text[at] = old;
            }
            assert_eq!(quoted_top(&text[..NAME_PAD - 1], k), None);
        }
        assert_eq!(top_name(Member::Other), None);
        assert_eq!(top_name(Member::SessionId), None);
        assert_eq!(top_name(Member::Feature(0)), None);
    }

    #[test]
    fn quoted_terminal_keys_match_only_themselves() {
        for (t, name) in TERMINAL_KEYS.iter().enumerate() {
            let mut text = std::format!("{name}\": null, \"x\": 1}}").into_bytes();
            assert!(is_quoted_terminal(&text, t), "{name}");
            for (u, other) in TERMINAL_KEYS.iter().enumerate() {
                assert_eq!(is_quoted_terminal(&text, u), u == t, "{name} as {other}");
            }
            // Any byte of the key or its quote changed: no match.
            for at in 0..=name.len() {
                let old = text[at];
                text[at] = b'#';
                assert!(!is_quoted_terminal(&text, t), "{name} at {at}");
                text[at] = old;
            }
            // Too few bytes left, or an unknown index: no match.
            assert!(!is_quoted_terminal(&text[..15], t));
            assert!(!is_quoted_terminal(&text, N_TERMINAL));
        }
        let mut text = *b"session_id\": \"abcdef\"";
        assert!(is_quoted_session_id(&text));
        assert!(!is_quoted_session_id(&text[..15]));
        for at in 0..=SESSION_ID.len() {
            let old = text[at];
            text[at] = b'#';
            assert!(!is_quoted_session_id(&text), "at {at}");
            text[at] = old;
        }
        assert!(!is_quoted_session_id(b"session_idx\": 1, \"a\": 2"));
    }

    #[test]
    fn equal_prefix_matches_a_byte_compare() {
        let a: [u8; NAME_PAD] = core::array::from_fn(|k| b'a' + k as u8);
        for n in 0..=NAME_PAD {
            assert!(equal_prefix(&a, &a, n), "n {n}");
            assert!(equal_prefix_words(&a, &a, n), "n {n}");
            for at in 0..NAME_PAD {
                let mut b = a;
                b[at] ^= 0x20;
                assert_eq!(equal_prefix(&a, &b, n), at >= n, "n {n}, differs at {at}");
                assert_eq!(equal_prefix_words(&a, &b, n), at >= n, "n {n}, at {at}");
            }
        }
        // Fewer than NAME_PAD bytes on the text side: never a match.
        assert!(!is_quoted_name(b"hour_of_day\"", 2));
    }

    fn key(raw: &str) -> Member {
        classify(
            Str {
                raw: raw.as_bytes(),
                escaped: raw.contains('\\'),
            },
            true,
        )
    }

    #[test]
    fn escaped_keys_are_known_by_their_decoded_value() {
        assert_eq!(key(r"\u0073ession_id"), Member::SessionId);
        assert_eq!(key(r"fe\u0061tures"), Member::Features);
        assert_eq!(key(r"n\u0061me"), Member::Slot(SLOT_NAME));
        assert_eq!(key(r"hour\u005fof_day"), Member::Feature(2));
        assert_eq!(key(r"\u0068\u006F\u0075\u0072_of_day"), Member::Feature(2));
        assert_eq!(key(r"hour_of_day\u0041"), Member::Other);
        assert_eq!(key(r"\ud800ession_id"), Member::Other);
        assert_eq!(key(r"\ud83d\ude00"), Member::Other);
        assert_eq!(key(r"a\/b"), Member::Other);
        assert_eq!(key(&"x".repeat(200)), Member::Other);
        assert_eq!(
            terminal_index(Str {
                raw: br"status\u005fcode",
                escaped: true
            }),
            Some(0)
        );
        let mut buf = [0u8; KEY_BUF];
        assert_eq!(decode(br"\ud83d\ude00x", &mut buf), Some("😀x".as_bytes()));
        assert_eq!(decode(br"\u00e9\n", &mut buf), Some("é\n".as_bytes()));
        assert_eq!(decode(br"\udc00", &mut buf), None);
        assert_eq!(decode(br"\ud800x", &mut buf), None);
    }

    #[test]
    fn synapse_fields_only_at_the_top() {
        let nested = |raw: &str| {
            classify(
                Str {
                    raw: raw.as_bytes(),
                    escaped: false,
                },
                false,
            )
        };
        assert_eq!(nested("name"), Member::Other);
        assert_eq!(nested("features"), Member::Other);
        assert_eq!(nested("session_id"), Member::SessionId);
        assert_eq!(nested("message_ratio"), Member::Feature(18));
        assert_eq!(key("response_time"), Member::Slot(SLOT_RESPONSE_TIME));
        assert_eq!(key("axon"), Member::Slot(SLOT_AXON));
    }
}
