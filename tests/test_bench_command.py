"""``fastmix bench`` (and ``benchmarks/compare.py``, its old spelling): progress, --json, --baseline.

Timing decides nothing here: the command runs on a tiny batch with one repeat, and the baselines
it is compared with are made a million times faster or slower than what it measured.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastmix.apps.bench import compare

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ["fastmix_mixup_batch", "fastmix_collate_switch_elem"]
TINY = ["--shapes", "4x3x8x8", "--dtypes", "float32", "--collate", "6x3x8x8", "--repeat", "1", "--no-traffic",
        "--only", ",".join(CANDIDATES)]


def bench(*args, script=None):
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "fastmix", "bench"]
    return subprocess.run(command + TINY + list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "run.json"
    proc = bench("--json", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(path.read_text())


def test_json_has_the_machine_and_one_row_per_candidate(first_run):
    _, run = first_run
    assert {"machine", "torch", "argv", "rows"} <= set(run), sorted(run)
    assert run["argv"][:2] == ["--shapes", "4x3x8x8"], run["argv"]
    assert "torch thread" in run["machine"]
    by_name = {row["candidate"]: row for row in run["rows"]}
    assert sorted(by_name) == sorted(CANDIDATES)
    for name, (shape, batch) in zip(CANDIDATES, [("4x3x8x8", 4), ("6x3x8x8", 6)]):
        row = by_name[name]
        assert (row["shape"], row["device"]) == (shape, "cpu"), row
        assert row["dtype"] == ("float32" if name == "fastmix_mixup_batch" else "uint8"), row
        assert row["median_ms"] > 0 and row["spread"] >= 0 and row["floor_ms"] > 0, row
        assert row["images_per_s"] == pytest.approx(batch / (row["median_ms"] / 1e3), rel=1e-9), row
        assert row["floor_ratio"] == pytest.approx(row["median_ms"] / row["floor_ms"], rel=1e-9), row


def test_progress_is_a_line_per_case_and_candidate_on_stderr(first_run):
    proc, _ = first_run
    lines = proc.stderr.splitlines()
    assert any(line.startswith("case 1/1: 4x3x8x8 float32") for line in lines), proc.stderr
    assert any(line.startswith("collate case 1/1: a list of 6 uint8 3x8x8") for line in lines), proc.stderr
    for name in CANDIDATES:
        assert sum(name in line and line.rstrip().endswith(" ms") for line in lines) == 1, (name, proc.stderr)
    assert "candidate" in proc.stdout and all(name in proc.stdout for name in CANDIDATES)


def test_baseline_flags_only_the_candidate_that_got_slower(first_run, tmp_path):
    _, run = first_run
    doctored = json.loads(json.dumps(run))
    for row in doctored["rows"]:   # the first candidate "was" a million times faster, the other slower
        row["median_ms"] *= 1e-6 if row["candidate"] == CANDIDATES[0] else 1e6
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doctored))
    proc = bench("--baseline", str(path))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    flagged = [line for line in proc.stdout.splitlines() if line.startswith("SLOWER:")]
    assert len(flagged) == 1 and CANDIDATES[0] in flagged[0], flagged
    assert f"baseline {path}: 1 regression(s)" in proc.stdout


def test_old_script_keeps_its_command_line(first_run, tmp_path):
    _, run = first_run
    path = tmp_path / "same.json"
    path.write_text(json.dumps(run))
    proc = bench("--baseline", str(path), "--threads", "1", script=ROOT / "benchmarks" / "compare.py")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]      # same machine, noise may flag a slowdown
    assert "regression(s)" in proc.stdout and "fastmix_mixup_batch" in proc.stdout


@pytest.mark.parametrize("new_ms, spreads, flagged", [
    (1.04, (0.0, 0.0), False),      # within the 5% floor on the allowed spread
    (1.06, (0.0, 0.0), True),
    (1.25, (0.3, 0.0), False),      # the new run's own spread allows 1.3x
    (1.25, (0.0, 0.3), False),      # so does the baseline's
    (1.35, (0.3, 0.1), True),
])
def test_compare_baseline_allows_the_larger_spread(tmp_path, new_ms, spreads, flagged, capsys):
    key = dict(candidate="fastmix_mixup_batch", shape="4x3x8x8", dtype="float32", device="cpu")
    path = tmp_path / "base.json"
    path.write_text(json.dumps({"rows": [dict(key, median_ms=1.0, spread=spreads[1])]}))
    slower = compare.compare_baseline([dict(key, median_ms=new_ms, spread=spreads[0])], str(path))
    assert slower == int(flagged), capsys.readouterr().out
