"""A real ``distillery annotate`` process with the tiny teacher, SIGKILLed mid-run and restarted, leaves exactly
the records of an uninterrupted run (no duplicate, no gap), and the merge of both agrees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distillery.annotation import merge_shards, read_shard_file, shard_paths

ARGS = ["--teacher", "tiny", "--data", "synthetic:100,seed=5", "--shard", "0", "--num-shards", "1",
        "--profile", "tiny", "--batch-size", "2", "--set", "annotate.split=all"]


def _start(out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "distillery.cli", "annotate", *ARGS, "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _wait_for_records(proc: subprocess.Popen[bytes], path: Path, n: int, timeout: float = 90.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"annotate ended before it could be killed: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return path.read_bytes().count(b"\n")
        time.sleep(0.05)
    pytest.fail(f"no {n} records in {path} after {timeout} s")


@pytest.mark.e2e
def test_sigkill_mid_run_then_restart_matches_uninterrupted_run(tmp_path):
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    ref_proc = _start(ref_dir)  # the uninterrupted run, side by side with the one we kill
    victim = _start(crash_dir)
    crash_file = shard_paths(crash_dir, 0, 1).records
    _wait_for_records(victim, crash_file, 5)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    done_at_kill = read_shard_file(crash_file).records
    assert 5 <= len(done_at_kill) < 100, "the kill must land mid-run"
    # Also leave a half-written record, as a kill inside write() would.
    with crash_file.open("ab") as fh:
        fh.write(b'{"forced_label": false, "generated_tok')
    resumed = _start(crash_dir)
    out_resumed = resumed.communicate(timeout=180)[0].decode()
    out_ref = ref_proc.communicate(timeout=180)[0].decode()
    assert resumed.returncode == 0, out_resumed[-3000:]
    assert ref_proc.returncode == 0, out_ref[-3000:]
    assert f"{len(done_at_kill)} already done" in out_resumed and "half-written line" in out_resumed
    ref_bytes = shard_paths(ref_dir, 0, 1).records.read_bytes()
    assert crash_file.read_bytes() == ref_bytes
    records = read_shard_file(crash_file).records
    keys = [(r["query_id"], r["item_id"]) for r in records]
    assert len(keys) == len(set(keys)) == 100
    assert merge_shards(crash_dir, tmp_path / "merged.jsonl").records == 100
