"""Cost of checkpointing an annotation shard to S3 (moto's server on loopback): one part object per batch
(``distillery.annotation.checkpoint``) against re-uploading the whole shard file after every batch, and what a
restarted pod pays to restore.  Records are real-sized (about 1.3 KB: reasoning, raw answer, teacher identity).

    python benchmarks/annotation_checkpoint.py [--records 4096] [--batch 64]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path


def _records(n: int) -> list[dict[str, object]]:
    text = "The item matches the query's brand and colour; the size attribute is not stated. " * 6
    return [{"query_id": f"q{i // 8}", "item_id": f"i{i}", "label": "Exact", "label_probs": [0.8, 0.1, 0.1],
             "reasoning": text, "raw": f"Reasoning: {text}\nLabel: Exact", "parse_error": None, "issues": [],
             "teacher": {"model": "smollm2", "dtype": "bfloat16"}, "generation": {"batch_size": 64}}
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", TQDM_DISABLE="1")
    from distillery import storage
    from distillery.annotation.checkpoint import open_checkpoint
    from distillery.annotation.shards import encode_records, shard_paths

    storage.client().create_bucket(Bucket="bench")
    recs, bs = _records(args.records), args.batch
    ckpt = open_checkpoint("s3://bench/parts", "k", 0, 1)
    assert ckpt is not None
    t, sent = time.perf_counter(), 0
    for start in range(0, len(recs), bs):
        blob = encode_records(recs[start:start + bs])
        ckpt.push(blob, start, len(recs[start:start + bs]))
        sent += len(blob)
    parts_s = time.perf_counter() - t
    s3, whole, t = storage.client(), b"", time.perf_counter()
    whole_sent = 0
    for start in range(0, len(recs), bs):
        whole += encode_records(recs[start:start + bs])
        s3.put_object(Bucket="bench", Key="whole/shard.jsonl", Body=whole)
        whole_sent += len(whole)
    whole_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fresh = open_checkpoint("s3://bench/parts", "k", 0, 1)
        assert fresh is not None
        n = fresh.restore(shard_paths(Path(tmp), 0, 1))
        restore_s = time.perf_counter() - t
    server.stop()
    batches = -(-len(recs) // bs)
    mib = 1024 * 1024
    print(f"{len(recs)} records ({sent / mib:.1f} MiB) in {batches} batches of {bs}:")
    print(f"  one part per batch: {sent / mib:.1f} MiB sent, {parts_s:.2f} s ({parts_s / batches * 1000:.1f} ms/batch)")
    print(f"  whole file per batch: {whole_sent / mib:.1f} MiB sent, {whole_s:.2f} s "
          f"({whole_s / batches * 1000:.1f} ms/batch, growing with the file)")
    print(f"  restore in a fresh directory: {n} records from {batches} parts in {restore_s:.2f} s")


if __name__ == "__main__":
    main()
