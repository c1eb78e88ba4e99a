"""Data specs naming ``s3://`` files, read from moto's S3 server on loopback (the endpoint from the environment,
as on a cluster): every file kind, a parquet dataset under a prefix, and errors that name the URI."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillery.data import DataError, load
from distillery.data.spec import check_spec

ROWS = [{"query_id": "q1", "query": "red shoe", "item_id": "i1", "title": "Red running shoe", "label": "E"},
        {"query_id": "q1", "query": "red shoe", "item_id": "i2", "title": "Blue sock", "label": "I"},
        {"query_id": "q2", "query": "usb c cable", "item_id": "i3", "title": "USB-C cable 2m", "label": "S"}]


def _put(bucket: str, key: str, body: bytes) -> str:
    from distillery.storage import client

    client().put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def _delimited(sep: str) -> bytes:
    cols = list(ROWS[0])
    return ("\n".join([sep.join(cols), *[sep.join(r[c] for c in cols) for r in ROWS]]) + "\n").encode()


def _parquet(tmp_path, name: str = "logs.parquet") -> bytes:
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path.read_bytes()


def test_every_file_kind_reads_an_s3_object(bucket: str, tmp_path) -> None:
    jsonl = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    uris = {
        "jsonl": _put(bucket, "d/logs.jsonl", jsonl),
        "jsonl-gz": _put(bucket, "d/logs.jsonl.gz", gzip.compress(jsonl)),
        "csv": _put(bucket, "d/logs.csv", _delimited(",")),
        "tsv": _put(bucket, "d/logs.tsv", _delimited("\t")),
        "parquet": _put(bucket, "d/logs.parquet", _parquet(tmp_path)),
    }
    for name, uri in uris.items():
        kind = name.split("-")[0]
        pairs, report = load(f"{kind}:{uri}")
        assert [(p.query_id, p.item_id, p.label) for p in pairs] == [(r["query_id"], r["item_id"], r["label"])
                                                                      for r in ROWS], name
        assert report.source == uri and report.rows_read == 3


def test_esci_tsv_and_a_parquet_dataset_prefix(bucket: str, tmp_path) -> None:
    esci = "query_id\tquery\tproduct_id\tesci_label\ttitle\n1\tred shoe\tB01\tE\tRed shoe\n1\tred shoe\tB02\tC\tLaces\n"
    uri = _put(bucket, "esci/subset.tsv.gz", gzip.compress(esci.encode()))
    pairs, _ = load(f"esci:{uri}")
    assert [p.label for p in pairs] == ["E", "C"]
    # A prefix holding several parquet files is one dataset, as a local directory is.
    table = pa.Table.from_pylist(ROWS)
    for i in range(2):
        pq.write_table(table.slice(i, 1) if i == 0 else table.slice(1), tmp_path / f"part-{i}.parquet")
        _put(bucket, f"ds/logs/part-{i}.parquet", (tmp_path / f"part-{i}.parquet").read_bytes())
    pairs, _ = load(f"parquet:s3://{bucket}/ds/logs")
    assert sorted(p.item_id for p in pairs) == ["i1", "i2", "i3"]


def test_errors_name_the_uri_not_the_temporary_copy(bucket: str) -> None:
    bad = _put(bucket, "bad/logs.jsonl", b'{"query_id": "q1", "query": "x", "item_id": "i1"}\n{not json\n')
    with pytest.raises(DataError, match=rf"^{bad}:2: malformed JSON"):
        load(f"jsonl:{bad}")
    with pytest.raises(DataError, match=rf"^s3://{bucket}/missing.csv: no such file$"):
        load(f"csv:s3://{bucket}/missing.csv")
    with pytest.raises(DataError, match="the bucket 'no-such-bucket' does not exist"):
        load("csv:s3://no-such-bucket/logs.csv")


@pytest.mark.parametrize(("spec", "why"), [
    ("parquet:s3://b/", "is not s3://BUCKET/KEY"),
    ("parquet:gs://b/x.parquet", "only local paths and s3://BUCKET/KEY"),
    ("csv:s3://bkt/x.csv,sku=item_id", "unknown field"),
    ("esci:s3://bkt/x.tsv,region=us", "unknown option"),
    ("synthetic:10,seed=-1", "seed=-1 must be ≥ 0"),
    ("csv:,query=q", "no file named"),
])
def test_check_spec_rejects_without_reading(spec: str, why: str) -> None:
    with pytest.raises(DataError, match=why):
        check_spec(spec)
