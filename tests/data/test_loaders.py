from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillery.data import DataError, load, parse_spec
from distillery.data.schema import FOUR_CLASS, THREE_CLASS, label_indices


def test_esci_subset_loads_every_row(esci_path):
    pairs, report = load(f"esci:{esci_path}")
    assert len(pairs) == report.rows_read == 4135
    assert report.skipped == {}
    assert len({p.query_id for p in pairs}) == 94
    p = pairs[0]
    assert p.query and p.item_id.startswith("B") and p.title and p.label_source == "human"
    y3 = label_indices(pairs, THREE_CLASS)
    y4 = label_indices(pairs, FOUR_CLASS)
    # Label counts of the subset's README: Exact 2,120 · Substitute 1,158 · Complement 200 · Irrelevant 657
    assert [y4.count(i) for i in range(4)] == [2120, 1158, 200, 657]
    assert [y3.count(i) for i in range(3)] == [2120, 1358, 657]


def _full_esci_table(n_us: int, n_jp: int) -> pa.Table:
    rows = {
        "example_id": list(range(n_us + n_jp)),
        "query": ["red shoes"] * n_us + ["靴"] * n_jp,
        "query_id": [1] * n_us + [2] * n_jp,
        "product_id": [f"B{i:09d}" for i in range(n_us + n_jp)],
        "product_locale": ["us"] * n_us + ["jp"] * n_jp,
        "esci_label": ["E", "S", "C", "I"][: n_us] * 1 + ["E"] * n_jp,
        "small_version": [1] * (n_us + n_jp),
        "large_version": [1] * (n_us + n_jp),
        "split": ["train"] * (n_us + n_jp),
        "product_title": ["Red running shoe"] * (n_us + n_jp),
        "product_description": [None] * (n_us + n_jp),
        "product_bullet_point": ["light\nbreathable"] * (n_us + n_jp),
        "product_brand": ["Acme"] * (n_us + n_jp),
        "product_color": ["red"] * (n_us + n_jp),
    }
    return pa.table(rows)


def test_full_esci_parquet_layout_with_locale_filter_counted(tmp_path):
    path = tmp_path / "shopping_queries_dataset.parquet"
    pq.write_table(_full_esci_table(4, 2), path)
    pairs, report = load(f"esci:{path}")
    assert len(pairs) == 4 and report.skipped == {"product_locale!=us": 2}
    assert [p.label for p in pairs] == ["E", "S", "C", "I"]
    assert label_indices(pairs, THREE_CLASS) == [0, 1, 1, 2]
    assert pairs[0].description == "" and pairs[0].brand == "Acme" and pairs[0].query_id == "1"
    all_pairs, report = load(f"esci:{path},locale=all")
    assert len(all_pairs) == 6 and report.skipped == {}


def test_generic_jsonl_csv_parquet_with_column_mapping(tmp_path):
    rows = [{"qid": "q1", "search_term": "hot pot", "sku": "s1", "name": "Hotpot House", "grade": "Exact"},
            {"qid": "q1", "search_term": "hot pot", "sku": "s2", "name": "Nail Bar", "grade": "Irrelevant"}]
    mapping = "query_id=qid,query=search_term,item_id=sku,title=name,label=grade"
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "a.csv").write_text("qid,search_term,sku,name,grade\n" + "\n".join(
        ",".join(r.values()) for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for kind, name in (("jsonl", "a.jsonl"), ("csv", "a.csv"), ("parquet", "a.parquet")):
        pairs = load(f"{kind}:{tmp_path / name},{mapping}")[0]
        assert [(p.query_id, p.query, p.item_id, p.title, p.label) for p in pairs] == [
            ("q1", "hot pot", "s1", "Hotpot House", "Exact"), ("q1", "hot pot", "s2", "Nail Bar", "Irrelevant")]


def test_unlabelled_rows_are_kept_without_label(tmp_path):
    path = tmp_path / "logs.jsonl"
    path.write_text('{"query_id": "q", "query": "spa", "item_id": "i1", "title": "Oasis Spa"}\n')
    (p,) = load(f"jsonl:{path}")[0]
    assert p.label is None and p.label_source is None


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("query_id\tquery\tproduct_id\n", ".tsv", r"no data rows"),
        ("", ".tsv", r"empty file"),
        ("query_id\tquery\ttitle\nq\tx\tt\n", ".tsv", r"missing column\(s\) \['product_id'\]"),
        ("query_id\tquery\tproduct_id\tesci_label\nq\tx\tp\tE\nq\tx\tp2\n", ".tsv",
         r"x\.tsv:3: malformed row: 3 fields, the header has 4"),
        ("query_id\tquery\tproduct_id\tesci_label\nq\tx\tp\tVeryGood\n", ".tsv",
         r"x\.tsv:2: field 'esci_label': unknown label 'VeryGood'"),
        ("query_id\tquery\tproduct_id\tesci_label\nq\t\tp\tE\n", ".tsv",
         r"x\.tsv:2: field 'query' \(query\) is missing or empty"),
    ],
)
def test_bad_esci_input_names_file_line_field(tmp_path, content, suffix, message):
    path = tmp_path / f"x{suffix}"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load(f"esci:{path}")


def test_wrong_encoding_names_the_file(tmp_path):
    path = tmp_path / "latin.tsv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write("query_id\tquery\tproduct_id\nq\tcafé\tp\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.tsv\.gz: not valid UTF-8"):
        load(f"esci:{path}")


def test_malformed_jsonl_and_bad_label_source(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"query_id": "q", "query": "a", "item_id": "i"}\n{"query_id": \n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: malformed JSON"):
        load(f"jsonl:{path}")
    path.write_text('{"query_id": "q", "query": "a", "item_id": "i", "label": "E", "label_source": "guess"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl:1: field 'label_source'"):
        load(f"jsonl:{path}")
    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load(f"jsonl:{path}")


def test_missing_file_and_bad_specs(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(f"csv:{tmp_path / 'absent.csv'}")
    for spec, msg in [("xml:a", "expected KIND:TARGET"), ("synthetic:abc", "synthetic:abc"),
                      ("synthetic:10,colour=red", "unknown option"), ("csv:a.csv,bogus", "not KEY=VALUE"),
                      ("csv:a.csv,nosuchfield=x", "unknown field")]:
        with pytest.raises(DataError, match=msg):
            load(spec)
    assert parse_spec("synthetic:50,seed=3").options == {"seed": "3"}


def test_label_outside_the_chosen_set_is_named():
    from distillery.data import Pair

    pairs = [Pair("q", "a", "i1", label="Exact"), Pair("q", "a", "i2", label="Partial")]
    with pytest.raises(DataError, match=r"pair 1 \(q/i2\) field 'label': 'Partial' is not in the 4class"):
        label_indices(pairs, FOUR_CLASS)
