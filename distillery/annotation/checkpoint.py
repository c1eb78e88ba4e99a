"""A shard's records checkpointed to the artifact store, so that a shard restarted in a fresh pod resumes.

On a cluster each shard is a pod whose disk goes with it; KFP retries a failed task in a new pod.  S3 has no
append, so after each batch is appended (and fsynced) to the local shard file the same bytes go up as one
*part* object, named by the records it holds::

    <root>/annotations/<key>/shard-00000-of-00002.manifest.json
    <root>/annotations/<key>/shard-00000-of-00002.parts/0000000000-0000000064.jsonl

A PUT is atomic: a part is whole or absent, so a pod killed at any instant leaves parts that tile a prefix of
the shard's order.  A restarted shard downloads them (checking that they tile ``[0, n)`` with no gap), rebuilds
the local file, and goes on exactly as after a local crash.  Every byte is uploaded once (one PUT per batch); a
resume costs one LIST and one GET per part.  Re-uploading the whole file every batch would send
O(n²/batch) bytes instead (``benchmarks/annotation_checkpoint.py`` measures both).

``key`` names the run: the component derives it from its inputs (dataset, teacher, config), which are the
same for every retry of a task and, with KFP's cache, for a resubmitted run, so those resume too.

    from distillery.annotation.checkpoint import open_checkpoint
    ckpt = open_checkpoint("s3://runs/x/checkpoints", key="3f2a9c", shard=0, num_shards=2)  # None: local only
    annotate_shard(teacher, pairs, 0, 2, "/tmp/shard", cfg, checkpoint=ckpt)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from tqdm.auto import tqdm

from distillery import storage
from distillery.annotation.shards import AnnotationError, ShardPaths, read_shard_file

PART = re.compile(r"(\d{10})-(\d{10})\.jsonl$")
KEY = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def checkpoint_key(*inputs: str) -> str:
    """A short stable name for a run's checkpoints: a hash of what determines its records."""
    return hashlib.sha256(json.dumps(list(inputs)).encode()).hexdigest()[:20]


def open_checkpoint(root: str | None, key: str, shard: int, num_shards: int,
                    settings: storage.S3Settings | None = None) -> ShardCheckpoint | None:
    """The checkpoint of one shard under ``root`` (an ``s3://`` prefix); ``None`` when ``root`` is empty."""
    if not root:
        return None
    if not storage.is_s3(root):
        raise AnnotationError(f"annotation checkpoint {root!r}: must be an s3:// URI (or empty: local disk only)")
    if not KEY.match(key):
        raise AnnotationError(f"annotation checkpoint key {key!r}: must be 1-128 of A-Z a-z 0-9 . _ -")
    stem = f"shard-{shard:05d}-of-{num_shards:05d}"
    return ShardCheckpoint(f"{root.rstrip('/')}/annotations/{key}", stem, settings)


class ShardCheckpoint:
    """The manifest and record parts of one shard in the artifact store."""

    def __init__(self, prefix: str, stem: str, settings: storage.S3Settings | None = None) -> None:
        self.prefix, self.stem = prefix, stem
        self.bucket, self._key_prefix = storage.parse_s3(prefix)
        self._s3 = storage.client(settings)
        self.remote_records = 0
        """Records the store holds (a prefix of the shard's order), updated by each push."""
        self._has_manifest = False

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._object(name)}"

    def _object(self, name: str) -> str:
        return f"{self._key_prefix}/{name}" if self._key_prefix else name

    def _get(self, name: str) -> bytes | None:
        return storage.read_object(self.uri(name), self._s3, "read checkpoint")

    def _put(self, name: str, body: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._object(name), Body=body)
        except Exception as exc:
            raise storage.explain(exc, self.uri(name), "write checkpoint") from None

    def _parts(self) -> list[tuple[int, int, str]]:
        """``(first, end, name)`` of every stored part (``end`` exclusive)."""
        folder = f"{self.stem}.parts"
        keys = storage.list_keys(self.uri(folder), self._s3)
        out = []
        for k in keys:
            m = PART.search(k)
            if m is None:
                raise AnnotationError(f"s3://{self.bucket}/{k}: not a part of an annotation checkpoint "
                                      "(expected NNNNNNNNNN-NNNNNNNNNN.jsonl)")
            out.append((int(m.group(1)), int(m.group(2)), f"{folder}/{m.group(0)}"))
        return sorted(out)

    def _download_records(self) -> bytes:
        """The stored records as one blob: parts chained from record 0; a gap is an error naming it."""
        parts, pos, chunks = self._parts(), 0, []
        for first, end, name in tqdm(parts, desc=f"restore {self.stem}", unit="part", leave=False):
            if end <= pos:  # already covered (a part re-sent by a writer that was ahead of the store)
                continue
            if first > pos:
                raise AnnotationError(f"{self.uri(self.stem + '.parts')}: records [{pos}, {first}) are missing "
                                      f"before part {name}; delete {self.prefix} to start this shard over")
            body = self._get(name) or b""
            lines = body.split(b"\n")
            if lines[-1] != b"" or len(lines) - 1 != end - first:
                raise AnnotationError(f"{self.uri(name)}: holds {len(lines) - 1} complete record(s), its name says "
                                      f"{end - first}; delete {self.prefix} to start this shard over")
            chunks.append(b"".join(line + b"\n" for line in lines[pos - first:-1]))
            pos = end
        self.remote_records = pos
        return b"".join(chunks)

    def restore(self, paths: ShardPaths) -> int:
        """Bring the local shard files up to the store's: the manifest if absent here, the records when the
        store holds more complete ones than the local file.  Returns the number of records the store holds."""
        manifest = self._get(f"{self.stem}.manifest.json")
        if manifest is not None:
            self._has_manifest = True
            if not paths.manifest.exists():
                _write_durably(paths.manifest, manifest)
            elif json.loads(paths.manifest.read_bytes()) != json.loads(manifest):
                raise AnnotationError(f"{paths.manifest}: differs from {self.uri(self.stem + '.manifest.json')}; "
                                      "the local directory and the checkpoint belong to different runs")
        blob = self._download_records()
        local = read_shard_file(paths.records)
        have = paths.records.read_bytes()[:local.complete_bytes] if paths.records.exists() else b""
        common = min(len(have), len(blob))
        if have[:common] != blob[:common]:
            raise AnnotationError(f"{paths.records}: its records differ from those of {self.prefix}; the local "
                                  "directory and the checkpoint belong to different runs")
        if len(blob) > len(have):
            _write_durably(paths.records, blob)
        return self.remote_records

    def save_manifest(self, path: Path) -> None:
        """Store the shard's manifest (once), so that a restarted shard checks it is resuming the same work."""
        if not self._has_manifest:
            self._put(f"{self.stem}.manifest.json", path.read_bytes())
            self._has_manifest = True

    def push(self, blob: bytes, first: int, count: int) -> None:
        """Store records ``[first, first+count)`` (``blob``: their lines) as one part."""
        if count:
            self._put(f"{self.stem}.parts/{first:010d}-{first + count:010d}.jsonl", blob)
            self.remote_records = max(self.remote_records, first + count)

    def catch_up(self, path: Path, done: int) -> None:
        """Store the local file's records the store lacks (the writer was ahead: its upload had not happened)."""
        if done > self.remote_records:
            lines = path.read_bytes().split(b"\n")[self.remote_records:done]
            self.push(b"".join(line + b"\n" for line in lines), self.remote_records, done - self.remote_records)


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".restore")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)

