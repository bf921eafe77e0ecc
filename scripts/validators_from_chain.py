#!/usr/bin/env python3
"""Write the miner's validators file from the chain's metagraph.

`conversion-miner serve --validators FILE` serves only the hotkeys listed in
FILE (one `ss58[,stake]` per line, `#` comments) and re-reads it when it
changes. This script produces that file from a subnet's metagraph with the
Python bittensor SDK (10.x): every hotkey that holds a validator permit and at
least --min-stake stake (the metagraph's `S`, total stake in alpha units),
highest stake first.

It is split so the part that matters can be tested without a chain:
`select_validators` and `render` take any metagraph-like object (attributes
`hotkeys`, `validator_permit` and `S`, `total_stake` or `stake`, as lists,
numpy arrays or tensors) and return the entries and the file text; only
`fetch_metagraph` talks to the chain. The file is replaced atomically
(write a temporary file in the same directory, fsync, rename), so the miner
never reads half a list. An empty selection is refused unless --allow-empty:
an empty file would make the miner refuse every caller.

    python scripts/validators_from_chain.py --netuid 42 --min-stake 1000 \\
        --out /etc/conversion-miner/validators.txt

Exit status: 0 written, 1 nothing written (empty selection, bad metagraph
data or a chain error; an existing file is left as it was), 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import sys
import tempfile
from typing import Any, Iterable, NamedTuple, Optional, Sequence

#: Attribute names tried, in order, for each neuron's stake. `S` is what the
#: SDK's metagraph exposes (total stake: alpha plus weighted root TAO).
STAKE_ATTRS = ("S", "total_stake", "stake")
#: Decimals written for stakes; the SDK holds them as float32 anyway.
STAKE_DECIMALS = 4


class Validator(NamedTuple):
    hotkey: str
    stake: float


class MetagraphError(ValueError):
    """The metagraph's data is not something we should write a file from."""


def _as_list(values: Any, name: str) -> list:
    """A plain Python list from a list, tuple, numpy array or tensor."""
    if values is None:
        raise MetagraphError(f"metagraph has no {name}")
    if hasattr(values, "tolist"):
        values = values.tolist()
    try:
        return list(values)
    except TypeError:
        raise MetagraphError(f"metagraph {name} is not a sequence") from None


def _stakes(metagraph: Any) -> list:
    for attr in STAKE_ATTRS:
        values = getattr(metagraph, attr, None)
        if values is not None:
            return _as_list(values, attr)
    raise MetagraphError("metagraph has none of the stake attributes " + ", ".join(STAKE_ATTRS))


def _default_is_valid_ss58(address: str) -> bool:
    from bittensor.utils import is_valid_ss58_address

    return bool(is_valid_ss58_address(address))


def select_validators(
    metagraph: Any,
    min_stake: float = 0.0,
    is_valid_ss58=_default_is_valid_ss58,
) -> list[Validator]:
    """The permitted hotkeys with stake >= min_stake, highest stake first.

    Raises MetagraphError when the arrays disagree in length, a stake is not
    a finite non-negative number, or a selected hotkey is not a valid ss58
    address (the miner refuses a whole file with one bad line, so a bad entry
    must stop us rather than lock every validator out).
    """
    if not (isinstance(min_stake, (int, float)) and math.isfinite(min_stake) and min_stake >= 0):
        raise ValueError(f"min_stake must be a finite non-negative number, not {min_stake!r}")
    hotkeys = _as_list(getattr(metagraph, "hotkeys", None), "hotkeys")
    permits = _as_list(getattr(metagraph, "validator_permit", None), "validator_permit")
    stakes = _stakes(metagraph)
    if not (len(hotkeys) == len(permits) == len(stakes)):
        raise MetagraphError(
            f"metagraph arrays differ in length: {len(hotkeys)} hotkeys, "
            f"{len(permits)} validator_permit, {len(stakes)} stakes"
        )
    chosen: dict[str, float] = {}
    for uid, (hotkey, permit, stake) in enumerate(zip(hotkeys, permits, stakes)):
        try:
            stake = float(stake)
        except (TypeError, ValueError):
            raise MetagraphError(f"uid {uid}: stake {stake!r} is not a number") from None
        if not math.isfinite(stake) or stake < 0:
            raise MetagraphError(f"uid {uid}: stake {stake!r} is not a finite non-negative number")
        if not bool(permit) or stake < min_stake:
            continue
        if not isinstance(hotkey, str) or not is_valid_ss58(hotkey):
            raise MetagraphError(f"uid {uid}: hotkey {hotkey!r} is not an ss58 address")
        # A hotkey holds one uid per subnet; keep the larger stake if not.
        chosen[hotkey] = max(stake, chosen.get(hotkey, 0.0))
    return sorted((Validator(h, s) for h, s in chosen.items()), key=lambda v: (-v.stake, v.hotkey))


def render(validators: Iterable[Validator], header: Sequence[str] = ()) -> str:
    """The validators file: `#` header lines, then one `ss58,stake` per line."""
    lines = [f"# {h}" if h else "#" for h in header]
    lines += [f"{v.hotkey},{v.stake:.{STAKE_DECIMALS}f}" for v in validators]
    return "\n".join(lines) + "\n"


def header_lines(
    netuid: int,
    network: str,
    min_stake: float,
    count: int,
    block: Optional[int] = None,
    now: Optional[_dt.datetime] = None,
) -> list[str]:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    at = f" at block {block}" if block is not None else ""
    return [
        "conversion-miner validators file, written by scripts/validators_from_chain.py",
        f"netuid {netuid} on {network}{at}, {now.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"{count} hotkeys with validator_permit and stake >= {min_stake:g}, highest stake first",
        "format: ss58,stake (stake = metagraph S)",
    ]


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` so a reader sees the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".validators.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fetch_metagraph(network: str, netuid: int) -> Any:
    """The subnet's metagraph from the chain (lite sync: no weights or bonds)."""
    import bittensor as bt

    return bt.Subtensor(network=network).metagraph(netuid=netuid, lite=True)


def _block_of(metagraph: Any) -> Optional[int]:
    block = getattr(metagraph, "block", None)
    try:
        return int(block.item() if hasattr(block, "item") else block)
    except (TypeError, ValueError):
        return None


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Write conversion-miner's --validators file from a subnet's metagraph.",
    )
    p.add_argument("--netuid", type=int, required=True, help="subnet uid")
    p.add_argument(
        "--network",
        default="finney",
        help="bittensor network name (finney, test, local) or a ws(s):// endpoint (default: finney)",
    )
    p.add_argument(
        "--min-stake",
        type=float,
        default=0.0,
        help="least stake (metagraph S) a permitted validator needs to be listed (default: 0)",
    )
    p.add_argument("--out", required=True, help="file to replace atomically, or - for standard output")
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="write the file even if no hotkey qualifies (the miner then refuses every caller)",
    )
    a = p.parse_args(argv)
    if a.netuid < 0 or not math.isfinite(a.min_stake) or a.min_stake < 0:
        p.error("--netuid and --min-stake must be non-negative")
    return a


def main(argv: Optional[Sequence[str]] = None, fetch=fetch_metagraph) -> int:
    a = _parse_args(argv)
    try:
        mg = fetch(a.network, a.netuid)
    except Exception as e:  # the SDK raises many kinds; none should leave a file behind
        print(f"validators_from_chain: reading netuid {a.netuid} on {a.network} failed: {e}", file=sys.stderr)
        return 1
    try:
        chosen = select_validators(mg, a.min_stake)
    except MetagraphError as e:
        print(f"validators_from_chain: {e}; nothing written", file=sys.stderr)
        return 1
    if not chosen and not a.allow_empty:
        print(
            f"validators_from_chain: no hotkey on netuid {a.netuid} has a validator permit and "
            f"stake >= {a.min_stake:g}; nothing written (--allow-empty to write an empty list)",
            file=sys.stderr,
        )
        return 1
    text = render(chosen, header_lines(a.netuid, a.network, a.min_stake, len(chosen), _block_of(mg)))
    if a.out == "-":
        sys.stdout.write(text)
    else:
        write_atomic(a.out, text)
        print(f"validators_from_chain: wrote {len(chosen)} validators to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
