"""Tests for scripts/validators_from_chain.py without a chain.

The selection and file format are checked on two metagraph stand-ins: a plain
object with numpy arrays, and the SDK's own `bittensor.Metagraph` built
offline (sync=False) with its arrays filled in, so a rename of `hotkeys`,
`validator_permit` or `S` in the SDK fails here rather than on a miner.
Hotkeys are the substrate dev accounts, derived with the SDK's Keypair.
Only `fetch_metagraph` is left untested: it needs a chain.

    /path/to/venv/bin/python -m pytest tests/python
"""

import datetime as dt
import importlib.util
import os
import pathlib
import types

import bittensor as bt
import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "validators_from_chain.py"
_spec = importlib.util.spec_from_file_location("validators_from_chain", SCRIPT)
vfc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vfc)

ALICE, BOB, CHARLIE, DAVE, EVE = (
    bt.Keypair.create_from_uri("//" + n).ss58_address for n in ("Alice", "Bob", "Charlie", "Dave", "Eve")
)


def fake(hotkeys, permits, stakes, attr="S", block=None):
    m = types.SimpleNamespace(hotkeys=hotkeys, validator_permit=permits)
    setattr(m, attr, stakes)
    if block is not None:
        m.block = block
    return m


def sdk_metagraph(hotkeys, permits, stakes, block=4242):
    """A real bittensor.Metagraph, never synced, with the arrays a sync sets."""
    m = bt.Metagraph(netuid=7, network="finney", lite=True, sync=False)
    m.axons = [
        bt.AxonInfo(version=0, ip="0.0.0.0", port=0, ip_type=4, hotkey=h, coldkey=ALICE) for h in hotkeys
    ]
    m.validator_permit = np.array(permits, dtype=bool)
    m.total_stake = m.stake = np.array(stakes, dtype=np.float32)
    m.block = np.array(block, dtype=np.int64)
    return m


def parse_like_the_miner(text):
    """host/src/validators.rs: text before `#`, trimmed; `ss58[,stake]`."""
    out = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        addr, _, stake = line.partition(",")
        out[addr.strip()] = float(stake) if stake else 0.0
    return out


HOTKEYS = [ALICE, BOB, CHARLIE, DAVE, EVE]
PERMITS = [True, False, True, True, True]
STAKES = [1500.5, 9e6, 10.0, 1000.0, 1000.0]


def test_selects_permitted_above_min_stake_highest_first():
    got = vfc.select_validators(fake(HOTKEYS, np.array(PERMITS), np.array(STAKES, dtype=np.float32)), 1000)
    # Bob has the most stake but no permit; Charlie is below the minimum;
    # Dave and Eve tie and are ordered by address.
    tie = sorted([DAVE, EVE])
    assert [v.hotkey for v in got] == [ALICE] + tie
    assert [v.stake for v in got] == [1500.5, 1000.0, 1000.0]


def test_min_stake_zero_keeps_every_permit_and_lists_work():
    got = vfc.select_validators(fake(HOTKEYS, PERMITS, STAKES), 0)
    assert {v.hotkey for v in got} == {ALICE, CHARLIE, DAVE, EVE}


@pytest.mark.parametrize("attr", ["S", "total_stake", "stake"])
def test_stake_attribute_names(attr):
    got = vfc.select_validators(fake([ALICE], [True], [5.0], attr=attr), 1)
    assert got == [vfc.Validator(ALICE, 5.0)]


def test_real_sdk_metagraph_object():
    m = sdk_metagraph(HOTKEYS, PERMITS, STAKES)
    # The properties the script reads exist on the SDK class and mean what we think.
    assert m.hotkeys == HOTKEYS
    assert list(m.S) == list(np.array(STAKES, dtype=np.float32))
    got = vfc.select_validators(m, 1000)
    assert [v.hotkey for v in got] == [ALICE] + sorted([DAVE, EVE])
    assert vfc._block_of(m) == 4242


def test_rendered_file_reads_back_as_the_miner_reads_it():
    got = vfc.select_validators(sdk_metagraph(HOTKEYS, PERMITS, STAKES), 0)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    text = vfc.render(got, vfc.header_lines(7, "finney", 0, len(got), block=4242, now=when))
    lines = text.splitlines()
    assert lines[0].startswith("# ") and "netuid 7 on finney at block 4242, 2026-01-02T03:04:05Z" in text
    assert lines[4] == f"{ALICE},1500.5000"
    assert text.endswith("\n")
    assert parse_like_the_miner(text) == {ALICE: 1500.5, CHARLIE: 10.0, DAVE: 1000.0, EVE: 1000.0}


def test_bad_metagraph_data_is_refused():
    with pytest.raises(vfc.MetagraphError, match="differ in length"):
        vfc.select_validators(fake([ALICE, BOB], [True], [1.0, 2.0]))
    with pytest.raises(vfc.MetagraphError, match="uid 1"):
        vfc.select_validators(fake([ALICE, BOB], [True, False], [1.0, float("nan")]))
    with pytest.raises(vfc.MetagraphError, match="uid 0"):
        vfc.select_validators(fake([ALICE], [True], [-1.0]))
    with pytest.raises(vfc.MetagraphError, match="not an ss58"):
        vfc.select_validators(fake([ALICE[:-1] + "x"], [True], [1.0]))
    with pytest.raises(vfc.MetagraphError, match="stake attributes"):
        vfc.select_validators(types.SimpleNamespace(hotkeys=[ALICE], validator_permit=[True]))
    with pytest.raises(ValueError):
        vfc.select_validators(fake([ALICE], [True], [1.0]), float("inf"))


def test_bad_hotkey_without_permit_is_ignored():
    got = vfc.select_validators(fake(["not-a-key", ALICE], [False, True], [1.0, 2.0]))
    assert got == [vfc.Validator(ALICE, 2.0)]


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "validators.txt"
    path.write_text("old\n")
    vfc.write_atomic(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validators.txt"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "validators.txt"
    path.write_text("old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(vfc.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        vfc.write_atomic(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validators.txt"]


def test_main_writes_file_from_fetched_metagraph(tmp_path, capsys):
    path = tmp_path / "v.txt"
    seen = []

    def fetch(network, netuid):
        seen.append((network, netuid))
        return sdk_metagraph(HOTKEYS, PERMITS, STAKES)

    rc = vfc.main(["--netuid", "7", "--network", "test", "--min-stake", "1000", "--out", str(path)], fetch=fetch)
    assert rc == 0 and seen == [("test", 7)]
    assert parse_like_the_miner(path.read_text()) == {ALICE: 1500.5, DAVE: 1000.0, EVE: 1000.0}
    assert "wrote 3 validators" in capsys.readouterr().err


def test_main_refuses_empty_selection_and_keeps_old_file(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(f"{ALICE},1\n")
    mg = sdk_metagraph(HOTKEYS, PERMITS, STAKES)
    argv = ["--netuid", "7", "--min-stake", "1e9", "--out", str(path)]
    assert vfc.main(argv, fetch=lambda n, u: mg) == 1
    assert path.read_text() == f"{ALICE},1\n"
    assert vfc.main(argv + ["--allow-empty"], fetch=lambda n, u: mg) == 0
    assert parse_like_the_miner(path.read_text()) == {}


def test_main_chain_error_writes_nothing(tmp_path):
    path = tmp_path / "v.txt"

    def fetch(network, netuid):
        raise ConnectionError("no chain here")

    assert vfc.main(["--netuid", "7", "--out", str(path)], fetch=fetch) == 1
    assert not path.exists()


def test_main_stdout(capsys):
    rc = vfc.main(["--netuid", "1", "--out", "-"], fetch=lambda n, u: fake([BOB], [True], [3.0], block=12))
    out = capsys.readouterr().out
    assert rc == 0 and out.splitlines()[-1] == f"{BOB},3.0000" and "at block 12" in out


def test_script_runs_as_a_program_and_shows_usage():
    # Run the file itself (not the imported module) so its shebang/main path works.
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--min-stake" in r.stdout
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", "-"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--netuid" in r.stderr
    assert os.access(SCRIPT, os.R_OK)
