"""Annotation shards checkpointed to the artifact store (moto's S3 server on loopback, real boto3): a shard killed
mid-run resumes in a fresh, empty directory — a new pod — with no duplicate and no gap; the compiled pipeline's
shard tasks carry a retry policy and the store's credentials."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distillery.annotation import AnnotationError, annotate_shard, merge_shards, shard_paths
from distillery.annotation.checkpoint import checkpoint_key, open_checkpoint
from distillery.config import load_config
from distillery.data.synthetic import generate
from distillery.storage import client
from tests.annotate.test_shards import FakeTeacher

CONFIG = json.dumps({"profile": "tiny", "annotate": {"batch_size": 2, "split": "all"}})
# What the KFP component runs in its pod: the component's own function with artifacts on local paths.
POD = """
import sys
from kfp.dsl import Dataset
from components.annotation import annotate_shard
data, out, root, config = sys.argv[1:5]
annotate_shard.python_func(dataset=Dataset(uri=data), config_json=config, shard=0, num_shards=1,
                           annotations=Dataset(uri=out), teacher=None, checkpoint_uri=root)
"""


def _pod(data: Path, out: Path, root: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    return subprocess.Popen([sys.executable, "-c", POD, str(data), str(out), root, CONFIG], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stored_parts(bucket: str) -> list[tuple[int, int]]:
    keys = [o["Key"] for o in client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    return sorted((int(k[-27:-17]), int(k[-16:-6])) for k in keys if k.endswith(".jsonl"))


def _wait_for_stored(proc: subprocess.Popen[bytes], bucket: str, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the shard ended before it could be killed: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if sum(e - f for f, e in _stored_parts(bucket)) >= n:
            return
        time.sleep(0.05)
    pytest.fail(f"no {n} records stored in s3://{bucket} after {timeout} s")


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    from distillery.stages.data import prepare

    out = tmp_path / "dataset"
    prepare(load_config("tiny"), "synthetic:100,seed=5", out)
    return out


@pytest.mark.e2e
def test_a_killed_shard_resumes_from_s3_in_a_fresh_pod(tmp_path: Path, dataset: Path, bucket: str) -> None:
    root = f"s3://{bucket}/runs/r1"
    ref = _pod(dataset, tmp_path / "ref", "")  # uninterrupted, local disk only, side by side with the victim
    victim = _pod(dataset, tmp_path / "pod-1", root)
    _wait_for_stored(victim, bucket, 6)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    stored_at_kill = sum(e - f for f, e in _stored_parts(bucket))
    assert 6 <= stored_at_kill < 100, "the kill must land mid-run"
    retried = _pod(dataset, tmp_path / "pod-2", root)  # a new pod: its disk is empty
    out_retried = retried.communicate(timeout=300)[0].decode()
    out_ref = ref.communicate(timeout=300)[0].decode()
    assert retried.returncode == 0, out_retried[-3000:]
    assert ref.returncode == 0, out_ref[-3000:]
    metrics = json.loads((tmp_path / "pod-2" / "metrics.json").read_text())
    assert metrics["restored"] == metrics["already_done"] >= stored_at_kill
    assert metrics["written"] == 100 - metrics["already_done"]
    assert metrics["checkpoint"].startswith(f"{root}/annotations/")
    ref_bytes = shard_paths(tmp_path / "ref", 0, 1).records.read_bytes()
    assert shard_paths(tmp_path / "pod-2", 0, 1).records.read_bytes() == ref_bytes  # no duplicate, no gap
    parts = _stored_parts(bucket)
    assert parts[0][0] == 0 and parts[-1][1] == 100
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts)), f"parts overlap or leave gaps: {parts}"
    assert merge_shards(tmp_path / "pod-2", tmp_path / "merged.jsonl").records == 100


@pytest.fixture()
def cfg():
    return load_config("tiny", overrides={"annotate": {"batch_size": 4, "split": "all"}})


def test_store_and_local_files_agree_and_a_finished_shard_restores_whole(tmp_path: Path, bucket: str, cfg) -> None:
    pairs = generate(40, seed=2)
    ckpt = open_checkpoint(f"s3://{bucket}/c", checkpoint_key("d", "t", "c"), 0, 2)
    first = annotate_shard(FakeTeacher(), pairs, 0, 2, tmp_path / "a", cfg, checkpoint=ckpt)
    teacher = FakeTeacher()
    again = annotate_shard(teacher, pairs, 0, 2, tmp_path / "b", cfg,
                           checkpoint=open_checkpoint(f"s3://{bucket}/c", checkpoint_key("d", "t", "c"), 0, 2))
    assert again.restored == again.already_done == first.total and again.written == 0
    assert teacher.asked < cfg.annotate.batch_size  # at most the last batch is redone, as in a local rerun
    a, b = (shard_paths(tmp_path / d, 0, 2) for d in "ab")
    assert a.records.read_bytes() == b.records.read_bytes()
    assert a.manifest.read_bytes() == b.manifest.read_bytes()


def test_a_local_file_ahead_of_the_store_is_uploaded(tmp_path: Path, bucket: str, cfg) -> None:
    pairs = generate(40, seed=2)
    annotate_shard(FakeTeacher(), pairs, 0, 1, tmp_path / "a", cfg)  # no store: everything local only
    ckpt = open_checkpoint(f"s3://{bucket}/c", "k1", 0, 1)
    result = annotate_shard(FakeTeacher(), pairs, 0, 1, tmp_path / "a", cfg, checkpoint=ckpt)
    assert result.restored == 0 and result.written == 0
    again = annotate_shard(FakeTeacher(), pairs, 0, 1, tmp_path / "fresh", cfg,
                           checkpoint=open_checkpoint(f"s3://{bucket}/c", "k1", 0, 1))
    assert again.restored == 40 and again.written == 0
    assert (shard_paths(tmp_path / "fresh", 0, 1).records.read_bytes()
            == shard_paths(tmp_path / "a", 0, 1).records.read_bytes())


def test_a_gap_in_the_stored_parts_is_named(tmp_path: Path, bucket: str, cfg) -> None:
    annotate_shard(FakeTeacher(), generate(40, seed=2), 0, 1, tmp_path / "a", cfg,
                   checkpoint=open_checkpoint(f"s3://{bucket}/c", "k2", 0, 1))
    s3 = client()
    key = f"c/annotations/k2/shard-00000-of-00001.parts/{4:010d}-{8:010d}.jsonl"
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(AnnotationError, match=r"records \[4, 8\) are missing before part .*0000000008-0000000012"):
        annotate_shard(FakeTeacher(), generate(40, seed=2), 0, 1, tmp_path / "b", cfg,
                       checkpoint=open_checkpoint(f"s3://{bucket}/c", "k2", 0, 1))


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path, bucket: str, cfg) -> None:
    annotate_shard(FakeTeacher(), generate(40, seed=2), 0, 1, tmp_path / "a", cfg,
                   checkpoint=open_checkpoint(f"s3://{bucket}/c", "k3", 0, 1))
    with pytest.raises(AnnotationError, match="started with a different 'expected'"):
        annotate_shard(FakeTeacher(), generate(40, seed=9), 0, 1, tmp_path / "b", cfg,
                       checkpoint=open_checkpoint(f"s3://{bucket}/c", "k3", 0, 1))


def test_no_store_means_local_disk_and_a_bad_store_is_named(bucket: str) -> None:
    assert open_checkpoint("", "k", 0, 1) is None
    with pytest.raises(AnnotationError, match=r"'/tmp/x': must be an s3:// URI"):
        open_checkpoint("/tmp/x", "k", 0, 1)
    with pytest.raises(AnnotationError, match="key 'a/b'"):
        open_checkpoint(f"s3://{bucket}/c", "a/b", 0, 1)


def test_compiled_shard_tasks_retry_and_get_the_store(tmp_path: Path) -> None:
    from kfp import compiler

    from pipelines.annotation import BACKOFF, RETRIES, annotation_pipeline
    from tests.pipelines import ir

    compiler.Compiler().compile(annotation_pipeline, str(tmp_path / "annotation.yaml"))
    spec, platform = ir.load(tmp_path / "annotation.yaml")
    (shard,) = [t for _, name, t in ir.tasks(spec) if name == "annotate-shard"]
    assert shard["retryPolicy"]["maxRetryCount"] == RETRIES >= 2 and shard["retryPolicy"]["backoffDuration"] == BACKOFF
    wired = shard["inputs"]["parameters"]["checkpoint_uri"]
    assert wired == {"componentInputParameter": "pipelinechannel--checkpoint_uri"}
    secrets = platform["exec-annotate-shard"]["secretAsEnv"]
    assert {k["envVar"] for s in secrets for k in s["keyToEnv"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_a_missing_bucket_is_named_before_any_work(tmp_path: Path, s3_env: str, cfg) -> None:
    from distillery.storage import StorageError

    teacher = FakeTeacher()
    with pytest.raises(StorageError, match="the bucket 'no-such-bucket' does not exist"):
        annotate_shard(teacher, generate(20, seed=2), 0, 1, tmp_path / "a", cfg,
                       checkpoint=open_checkpoint("s3://no-such-bucket/c", "k4", 0, 1))
    assert teacher.asked == 0
