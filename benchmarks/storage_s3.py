"""Artifact-store throughput: one model-sized file up and down through ``distillery.storage`` (multipart,
SHA-256 checked) against moto's S3 server on loopback.  Prints MiB/s; moto runs in this process, so the
figures are lower bounds of what a real MinIO/S3 endpoint gives.

    python benchmarks/storage_s3.py [--mib 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    args = ap.parse_args()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    from distillery import storage

    storage.client().create_bucket(Bucket="bench-bucket")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model"
        src.mkdir()
        (src / "model.safetensors").write_bytes(os.urandom(args.mib * 1024 * 1024))
        t = time.perf_counter()
        storage.upload_dir(src, "s3://bench-bucket/model")
        up = time.perf_counter() - t
        t = time.perf_counter()
        storage.download_dir("s3://bench-bucket/model", Path(tmp) / "back")
        down = time.perf_counter() - t
    server.stop()
    print(f"{args.mib} MiB in {storage.S3Settings().multipart_threshold >> 20} MiB parts: upload {up:.2f} s "
          f"({args.mib / up:.1f} MiB/s), download + SHA-256 check {down:.2f} s ({args.mib / down:.1f} MiB/s)")


if __name__ == "__main__":
    main()
