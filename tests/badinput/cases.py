"""The bad-input campaign: every case writes its own tiny input under a fresh directory.

Categories: ``data`` (the loaders behind every ``--data`` spec), ``config`` (``--set`` and ``--config``),
``cli`` (each subcommand with a missing, invalid or wrong-kind argument), ``annotation`` (shard files,
merged annotation files, the merge) and ``cr`` (the operator's parsing of the two custom resources).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.badinput.harness import Case, Fixtures, Probe

CASES: list[Case] = []

ESCI_HEADER = "query_id\tquery\tproduct_id\tesci_label\ttitle\tbrand\tcolor\tbullet_points\tdescription\n"
ESCI_ROWS = [
    "q1\tred shoes\tB001\tExact\tRed running shoe\tAcme\tred\tlight\tA shoe\n",
    "q1\tred shoes\tB002\tIrrelevant\tBlue kettle\tKett\tblue\tsteel\tA kettle\n",
    "q2\tcafé au lait\tB003\tSubstitute\tCoffee mug\tMuggo\twhite\tceramic\tA mug\n",
]
CSV_HEADER = "query_id,query,item_id,title,label\n"
CSV_ROWS = ["q1,red shoes,i1,Red shoe,Exact\n", "q1,red shoes,i2,Kettle,Irrelevant\n", "q2,mug,i3,Mug,Partial\n"]
TINY = ["--profile", "tiny"]


def case(category: str, name: str) -> Callable[[Callable[[Path, Fixtures], Probe]], Callable[[Path, Fixtures], Probe]]:
    def register(fn: Callable[[Path, Fixtures], Probe]) -> Callable[[Path, Fixtures], Probe]:
        CASES.append(Case(category, name, fn))
        return fn

    return register


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _load(spec: str, *expect: str) -> Probe:
    from distillery.data import DataError, load

    return Probe(call=lambda: load(spec), errors=(DataError,), expect=expect)


def _data_cases() -> None:
    esci_text = ESCI_HEADER + "".join(ESCI_ROWS)

    def truncated_gzip(tmp: Path, fx: Fixtures) -> Probe:
        rows = "".join(f"q{i // 10}\tshoe {i}\tB{i:06d}\tExact\tShoe {i}\tAcme\tred\tlight\tA shoe\n"
                       for i in range(3000))
        blob = gzip.compress((ESCI_HEADER + rows).encode())
        p = _write(tmp / "esci.tsv.gz", blob[: len(blob) // 2])
        return _load(f"esci:{p}", "esci.tsv.gz", "truncated")

    def gzipped_garbage(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "esci.tsv.gz", b"this is not gzip at all\n" * 5)
        return _load(f"esci:{p}", "esci.tsv.gz", "gzip")

    def gzip_of_binary(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "logs.jsonl.gz", gzip.compress(bytes(range(256)) * 4))
        return _load(f"jsonl:{p}", "logs.jsonl.gz")

    def latin1(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "esci.tsv", esci_text.encode("latin-1"))
        return _load(f"esci:{p}", "esci.tsv", "UTF-8 at line 4")

    def utf16(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "esci.tsv", esci_text.encode("utf-16"))
        return _load(f"esci:{p}", "esci.tsv", "UTF-8")

    def missing_column(tmp: Path, fx: Fixtures) -> Probe:
        text = "".join("\t".join(c for i, c in enumerate(line.rstrip("\n").split("\t")) if i != 2) + "\n"
                       for line in esci_text.splitlines(keepends=True))
        p = _write(tmp / "esci.tsv", text)
        return _load(f"esci:{p}", "esci.tsv", "product_id")

    def extra_cells(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.csv", CSV_HEADER + CSV_ROWS[0] + "q1,red shoes,i2,Kettle,Irrelevant,surplus\n")
        return _load(f"csv:{p}", "pairs.csv:3", "6 fields")

    def empty_file(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.csv", "")
        return _load(f"csv:{p}", "pairs.csv", "empty")

    def empty_jsonl(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.jsonl", "\n\n")
        return _load(f"jsonl:{p}", "pairs.jsonl", "empty")

    def header_only(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.tsv", ESCI_HEADER)
        return _load(f"esci:{p}", "pairs.tsv", "no data rows")

    def unknown_label(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.csv", CSV_HEADER + CSV_ROWS[0] + "q1,red shoes,i2,Kettle,Relevant\n")
        return _load(f"csv:{p}", "pairs.csv:3", "'label'", "Relevant")

    def duplicate_conflict(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.csv", CSV_HEADER + "".join(CSV_ROWS) + "q1,red shoes,i1,Red shoe,Irrelevant\n")
        return _load(f"csv:{p}", "pairs.csv:5", "q1/i1", "line 2")

    def duplicate_jsonl(tmp: Path, fx: Fixtures) -> Probe:
        row = {"query_id": "q1", "query": "red shoes", "item_id": "i1", "title": "shoe", "label": "Exact"}
        p = _write(tmp / "pairs.jsonl", json.dumps(row) + "\n" + json.dumps({**row, "label": "Partial"}) + "\n")
        return _load(f"jsonl:{p}", "pairs.jsonl:2", "q1/i1")

    def empty_required(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.csv", CSV_HEADER + CSV_ROWS[0] + "q1,,i2,Kettle,Exact\n")
        return _load(f"csv:{p}", "pairs.csv:3", "'query'")

    def nan_field(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.jsonl", '{"query_id": "q1", "query": NaN, "item_id": "i1", "label": "Exact"}\n')
        return _load(f"jsonl:{p}", "pairs.jsonl:1", "'query'")

    def list_field(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.jsonl", '{"query_id": "q1", "query": "shoe", "item_id": "i1", "title": ["a", "b"]}\n')
        return _load(f"jsonl:{p}", "pairs.jsonl:1", "'title'")

    def jsonl_torn(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.jsonl", '{"query_id": "q1", "query": "shoe", "item_id": "i1"}\n{"query_id": "q1", "qu')
        return _load(f"jsonl:{p}", "pairs.jsonl:2", "JSON")

    def jsonl_array(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.jsonl", '["q1", "shoe", "i1"]\n')
        return _load(f"jsonl:{p}", "pairs.jsonl:1", "object")

    def bad_label_source(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.jsonl",
                   '{"query_id": "q1", "query": "s", "item_id": "i1", "label": "Exact", "label_source": "crowd"}\n')
        return _load(f"jsonl:{p}", "pairs.jsonl:1", "label_source")

    def no_such_file(tmp: Path, fx: Fixtures) -> Probe:
        return _load(f"csv:{tmp / 'nope.csv'}", "nope.csv", "no such file")

    def directory(tmp: Path, fx: Fixtures) -> Probe:
        (tmp / "adir").mkdir()
        return _load(f"tsv:{tmp / 'adir'}", "adir", "directory")

    def esci_directory(tmp: Path, fx: Fixtures) -> Probe:
        (tmp / "esci.tsv.gz").mkdir()
        return _load(f"esci:{tmp / 'esci.tsv.gz'}", "esci.tsv.gz", "directory")

    def unknown_scheme(tmp: Path, fx: Fixtures) -> Probe:
        return _load("xml:pairs.xml", "xml:pairs.xml", "KIND")

    def bad_mapping(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.csv", CSV_HEADER + "".join(CSV_ROWS))
        return _load(f"csv:{p},querry=query", "querry", "pairs.csv")

    def option_not_kv(tmp: Path, fx: Fixtures) -> Probe:
        return _load(f"csv:{tmp / 'p.csv'},oops", "oops", "KEY=VALUE")

    def esci_bad_option(tmp: Path, fx: Fixtures) -> Probe:
        return _load(f"esci:{tmp / 'e.tsv'},lang=us", "lang")

    def mapping_to_missing_column(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.csv", CSV_HEADER + "".join(CSV_ROWS))
        return _load(f"csv:{p},query=search_term", "pairs.csv", "search_term")

    def wrong_delimiter(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.tsv", CSV_HEADER + "".join(CSV_ROWS))
        return _load(f"tsv:{p}", "pairs.tsv", "missing column")

    def parquet_garbage(tmp: Path, fx: Fixtures) -> Probe:
        p = _write(tmp / "pairs.parquet", b"PAR1 but not really")
        return _load(f"parquet:{p}", "pairs.parquet", "parquet")

    def parquet_missing_column(tmp: Path, fx: Fixtures) -> Probe:
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = tmp / "pairs.parquet"
        pq.write_table(pa.table({"query_id": ["q1"], "query": ["s"]}), p)
        return _load(f"parquet:{p}", "pairs.parquet", "item_id")

    def parquet_bad_label(tmp: Path, fx: Fixtures) -> Probe:
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = tmp / "pairs.parquet"
        pq.write_table(pa.table({"query_id": ["q1", "q1"], "query": ["s", "s"], "item_id": ["i1", "i2"],
                                 "label": ["Exact", "Great"]}), p)
        return _load(f"parquet:{p}", "pairs.parquet", "row 1", "Great")

    def synthetic_negative(tmp: Path, fx: Fixtures) -> Probe:
        return _load("synthetic:-5", "synthetic:-5", "positive")

    def synthetic_abc(tmp: Path, fx: Fixtures) -> Probe:
        return _load("synthetic:abc", "synthetic:abc", "'abc'")

    def synthetic_noise(tmp: Path, fx: Fixtures) -> Probe:
        return _load("synthetic:50,noise=2", "noise")

    def synthetic_option(tmp: Path, fx: Fixtures) -> Probe:
        return _load("synthetic:50,size=3", "size")

    def synthetic_seed(tmp: Path, fx: Fixtures) -> Probe:
        return _load("synthetic:50,seed=x", "seed", "'x'")

    def empty_target(tmp: Path, fx: Fixtures) -> Probe:
        return _load("synthetic:", "synthetic:")

    for fn in (truncated_gzip, gzipped_garbage, gzip_of_binary, latin1, utf16, missing_column, extra_cells,
               empty_file, empty_jsonl, header_only, unknown_label, duplicate_conflict, duplicate_jsonl,
               empty_required, nan_field, list_field, jsonl_torn, jsonl_array, bad_label_source, no_such_file,
               directory, esci_directory, unknown_scheme, bad_mapping, option_not_kv, esci_bad_option,
               mapping_to_missing_column, wrong_delimiter, parquet_garbage, parquet_missing_column,
               parquet_bad_label, synthetic_negative, synthetic_abc, synthetic_noise, synthetic_option,
               synthetic_seed, empty_target):
        case("data", fn.__name__)(fn)


def _finetune(tmp: Path, *extra: str) -> list[str]:
    return ["finetune", *TINY, "--data", "synthetic:60", "--out", str(tmp / "out"), *extra]


def _config_cases() -> None:
    sets = {
        "set_nan": ("train.lr=nan", ("train.lr",)),
        "set_inf": ("train.lr=inf", ("train.lr",)),
        "set_huge_int": ("train.epochs=99999999999999999999", ("train.epochs",)),
        "set_negative_size": ("train.batch_size=-4", ("train.batch_size",)),
        "set_wrong_type": ("train.epochs=abc", ("train.epochs", "int")),
        "set_float_for_int": ("train.epochs=2.5", ("train.epochs",)),
        "set_empty_value": ("train.lr=", ("train.lr",)),
        "set_unknown_section": ("nosuch.x=1", ("nosuch",)),
        "set_unknown_field": ("train.nosuch=1", ("train.nosuch",)),
        "set_section_scalar": ("train=3", ("train",)),
        "set_not_key_value": ("train.lr", ("train.lr", "SECTION.FIELD=VALUE")),
        "set_bad_bool": ("annotate.fsync=maybe", ("annotate.fsync",)),
        "set_bad_list_item": ("student.item_fields=title,price", ("student.item_fields", "price")),
        "set_nan_in_list": ("teacher.reward_weights=nan,1,1,1,1", ("teacher.reward_weights",)),
        "set_noise_nan": ("data.synthetic_noise=nan", ("data.synthetic_noise",)),
        "set_int_inf": ("data.max_queries=inf", ("data.max_queries",)),
        "set_unknown_profile": ("profile=huge", ("profile", "huge")),
        "set_bad_label_set": ("data.label_set=5class", ("data.label_set",)),
        "set_fractions_sum": ("data.val_fraction=0.85", ("data.test_fraction + data.val_fraction",)),
    }
    for name, (override, expect) in sets.items():
        def setup(tmp: Path, fx: Fixtures, override: str = override, expect: tuple[str, ...] = expect) -> Probe:
            return Probe(argv=_finetune(tmp, "--set", override), expect=expect, absent=(tmp / "out",))

        case("config", name)(setup)

    yamls: dict[str, tuple[str | bytes, tuple[str, ...]]] = {
        "yaml_malformed": ("train:\n  lr: [1e-4\n  epochs: 2\n", ("cfg.yaml", "line")),
        "yaml_list": ("- train\n- lr\n", ("cfg.yaml", "mapping")),
        "yaml_unknown_section": ("trainer:\n  lr: 0.1\n", ("trainer",)),
        "yaml_section_scalar": ("train: 5\n", ("train",)),
        "yaml_nan": ("train:\n  lr: .nan\n", ("train.lr",)),
        "yaml_list_for_int": ("train:\n  epochs: [1, 2]\n", ("train.epochs",)),
        "yaml_bool_for_int": ("train:\n  epochs: true\n", ("train.epochs",)),
        "yaml_list_for_str": ("student:\n  model: [tiny]\n", ("student.model",)),
        "yaml_latin1": ("train:\n  lr: 0.1 # café\n".encode("latin-1"), ("cfg.yaml", "UTF-8")),
        "yaml_huge": ("train:\n  epochs: 1e400\n", ("train.epochs",)),
    }
    for name, (text, expect) in yamls.items():
        def ysetup(tmp: Path, fx: Fixtures, text: str | bytes = text, expect: tuple[str, ...] = expect) -> Probe:
            cfg = _write(tmp / "cfg.yaml", text)
            return Probe(argv=_finetune(tmp, "--config", str(cfg)), expect=expect, absent=(tmp / "out",))

        case("config", name)(ysetup)

    @case("config", "config_missing_file")
    def config_missing(tmp: Path, fx: Fixtures) -> Probe:
        return Probe(argv=_finetune(tmp, "--config", str(tmp / "none.yaml")), expect=("none.yaml",),
                     absent=(tmp / "out",))

    @case("config", "config_is_directory")
    def config_dir(tmp: Path, fx: Fixtures) -> Probe:
        return Probe(argv=_finetune(tmp, "--config", str(tmp)), expect=(str(tmp),), absent=(tmp / "out",))

    @case("config", "unknown_profile")
    def unknown_profile(tmp: Path, fx: Fixtures) -> Probe:
        return Probe(argv=["finetune", "--profile", "huge", "--data", "synthetic:60", "--out", str(tmp / "out")],
                     expect=("--profile", "huge"), absent=(tmp / "out",))


def _shard_record(qid: str, iid: str, **extra: Any) -> dict[str, Any]:
    return {"query_id": qid, "item_id": iid, "label": "Exact", "label_probs": [0.8, 0.15, 0.05],
            "reasoning": "matches", **extra}


def _write_shards(d: Path, shards: dict[int, list[dict[str, Any]]], num: int, *, torn: str = "") -> None:
    from distillery.annotation.shards import shard_paths

    d.mkdir(parents=True, exist_ok=True)
    for k, recs in shards.items():
        sp = shard_paths(d, k, num)
        sp.records.write_text("".join(json.dumps(r) + "\n" for r in recs) + (torn if k == 0 else ""))
        expected = sorted({(r["query_id"], r["item_id"]) for r in recs})
        sp.manifest.write_text(json.dumps({"shard": k, "num_shards": num, "expected": expected,
                                           "input_pairs": sum(len(v) for v in shards.values())}))


def _merge(tmp: Path, *expect: str) -> Probe:
    out = tmp / "merged" / "annotations.jsonl"
    return Probe(argv=["annotate", "merge", "--in", str(tmp / "shards"), "--out", str(out)], expect=expect,
                 absent=(out, out.with_suffix(".report.json")))


def _distill(tmp: Path, annotations: Path, *expect: str) -> Probe:
    return Probe(argv=["distill", *TINY, "--annotations", str(annotations), "--data", "synthetic:60",
                       "--out", str(tmp / "out")], expect=expect, absent=(tmp / "out" / "metrics.json",
                                                                          tmp / "out" / "model"))


def _annotation_cases() -> None:
    @case("annotation", "merge_torn_last_line")
    def torn(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1")]}, 1, torn='{"query_id": "q1", "item')
        return _merge(tmp, "shard-00000-of-00001.jsonl:2", "half-written")

    @case("annotation", "merge_duplicate_records")
    def dup(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1"), _shard_record("q1", "i1")]}, 1)
        return _merge(tmp, "q1/i1", "more than once")

    @case("annotation", "merge_gap_missing_shard")
    def gap(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1")], 2: [_shard_record("q2", "i2")]}, 3)
        return _merge(tmp, "shard 1 of 3")

    @case("annotation", "merge_missing_pairs")
    def missing_pairs(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1"), _shard_record("q1", "i2")]}, 1)
        sp = tmp / "shards" / "shard-00000-of-00001.jsonl"
        sp.write_text(sp.read_text().splitlines(keepends=True)[0])
        return _merge(tmp, "q1/i2", "missing")

    @case("annotation", "merge_no_shards")
    def empty_dir(tmp: Path, fx: Fixtures) -> Probe:
        (tmp / "shards").mkdir()
        return _merge(tmp, "shards", "no shard manifests")

    @case("annotation", "merge_corrupt_manifest")
    def corrupt_manifest(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1")]}, 1)
        (tmp / "shards" / "shard-00000-of-00001.manifest.json").write_text('{"shard": 0, "num_')
        return _merge(tmp, "shard-00000-of-00001.manifest.json")

    @case("annotation", "merge_manifest_missing_field")
    def manifest_field(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1")]}, 1)
        (tmp / "shards" / "shard-00000-of-00001.manifest.json").write_text('{"shard": 0, "num_shards": 1}')
        return _merge(tmp, "shard-00000-of-00001.manifest.json", "expected")

    @case("annotation", "merge_label_outside_set")
    def bad_label(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1", label="Great")]}, 1)
        return _merge(tmp, "shard-00000-of-00001.jsonl:1", "label", "Great")

    @case("annotation", "merge_missing_field")
    def missing_field(tmp: Path, fx: Fixtures) -> Probe:
        rec = _shard_record("q1", "i1")
        del rec["reasoning"]
        _write_shards(tmp / "shards", {0: [rec]}, 1)
        return _merge(tmp, "shard-00000-of-00001.jsonl:1", "reasoning")

    @case("annotation", "merge_bad_label_probs")
    def bad_probs(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1", label_probs=["high", "low"])]}, 1)
        return _merge(tmp, "shard-00000-of-00001.jsonl:1", "label_probs")

    @case("annotation", "merge_nan_label_probs")
    def nan_probs(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1", label_probs=[float("nan"), 0.5, 0.5])]}, 1)
        return _merge(tmp, "shard-00000-of-00001.jsonl:1", "label_probs")

    @case("annotation", "merge_records_of_other_data")
    def foreign(tmp: Path, fx: Fixtures) -> Probe:
        _write_shards(tmp / "shards", {0: [_shard_record("q1", "i1")]}, 1)
        sp = tmp / "shards" / "shard-00000-of-00001.jsonl"
        sp.write_text(sp.read_text() + json.dumps(_shard_record("zz", "other")) + "\n")
        return _merge(tmp, "zz/other", "no shard owns")

    @case("annotation", "distill_annotations_of_other_dataset")
    def other_dataset(tmp: Path, fx: Fixtures) -> Probe:
        ann = _write(tmp / "ann.jsonl", "".join(json.dumps(_shard_record(f"x{i}", f"y{i}")) + "\n" for i in range(5)))
        return _distill(tmp, ann, "ann.jsonl", "synthetic:60")

    @case("annotation", "distill_half_written_file")
    def distill_torn(tmp: Path, fx: Fixtures) -> Probe:
        ann = _write(tmp / "ann.jsonl", json.dumps(_shard_record("q1", "i1")) + "\n" + '{"query_id": "q1"')
        return _distill(tmp, ann, "ann.jsonl:2", "half-written")

    @case("annotation", "distill_duplicate_records")
    def distill_dup(tmp: Path, fx: Fixtures) -> Probe:
        ann = _write(tmp / "ann.jsonl", (json.dumps(_shard_record("q1", "i1")) + "\n") * 2)
        return _distill(tmp, ann, "ann.jsonl:2", "q1/i1")

    @case("annotation", "distill_missing_file")
    def distill_missing(tmp: Path, fx: Fixtures) -> Probe:
        return _distill(tmp, tmp / "none.jsonl", "none.jsonl")

    @case("annotation", "distill_label_outside_set")
    def distill_bad_label(tmp: Path, fx: Fixtures) -> Probe:
        ann = _write(tmp / "ann.jsonl", json.dumps(_shard_record("q000-00000", "svc00001", label=7)) + "\n")
        return _distill(tmp, ann, "ann.jsonl:1", "label")

    @case("annotation", "distill_annotations_is_directory")
    def distill_dir(tmp: Path, fx: Fixtures) -> Probe:
        (tmp / "ann").mkdir()
        return _distill(tmp, tmp / "ann", "ann", "directory")


def _cli_cases() -> None:
    def cli(name: str, expect: tuple[str, ...], absent: Callable[[Path], tuple[Path, ...]] = lambda t: ()
            ) -> Callable[[Callable[[Path, Fixtures], list[str]]], None]:
        def register(fn: Callable[[Path, Fixtures], list[str]]) -> None:
            def setup(tmp: Path, fx: Fixtures) -> Probe:
                return Probe(argv=fn(tmp, fx), expect=expect, absent=absent(tmp))

            case("cli", name)(setup)

        return register

    out_absent: Callable[[Path], tuple[Path, ...]] = lambda t: (t / "out",)  # noqa: E731

    cli("no_subcommand", ("command",))(lambda t, fx: [])
    cli("finetune_missing_data", ("--data",), out_absent)(lambda t, fx: ["finetune", "--out", str(t / "out")])
    cli("finetune_bad_method", ("--method", "svm"), out_absent)(
        lambda t, fx: _finetune(t, "--method", "svm"))
    cli("finetune_missing_data_file", ("nope.jsonl", "no such file"), out_absent)(
        lambda t, fx: ["finetune", *TINY, "--data", f"jsonl:{t / 'nope.jsonl'}", "--out", str(t / "out")])
    cli("finetune_out_is_a_file", ("out", "not a directory"))(
        lambda t, fx: ["finetune", *TINY, "--data", "synthetic:60", "--out", str(_write(t / "out", "x"))])
    cli("finetune_too_few_queries", ("queries",), lambda t: (t / "out" / "metrics.json", t / "out" / "model"))(
        lambda t, fx: ["finetune", *TINY, "--data", "synthetic:10", "--out", str(t / "out")])
    cli("finetune_unlabelled_data", ("label",), lambda t: (t / "out" / "metrics.json", t / "out" / "model"))(
        lambda t, fx: ["finetune", *TINY, "--out", str(t / "out"), "--data", "jsonl:" + str(_write(
            t / "u.jsonl", "".join(json.dumps({"query_id": f"q{i % 5}", "query": "s", "item_id": f"i{i}"}) + "\n"
                                   for i in range(20))))])
    cli("evaluate_missing_model", ("--model",), lambda t: (t / "m.json",))(
        lambda t, fx: ["evaluate", "--data", "synthetic:10", "--out", str(t / "m.json")])
    cli("evaluate_nonexistent_model", ("nope", "no such directory"), lambda t: (t / "m.json",))(
        lambda t, fx: ["evaluate", *TINY, "--model", str(t / "nope"), "--data", "synthetic:10", "--out",
                       str(t / "m.json")])
    cli("evaluate_empty_model_dir", ("empty", "distillery.json"), lambda t: (t / "m.json",))(
        lambda t, fx: ["evaluate", *TINY, "--model", str(_mkdir(t / "empty")), "--data", "synthetic:10",
                       "--out", str(t / "m.json")])
    cli("evaluate_teacher_dir", ("teacher", "not a student"), lambda t: (t / "m.json",))(
        lambda t, fx: ["evaluate", *TINY, "--model", str(fx.teacher()), "--data", "synthetic:10",
                       "--out", str(t / "m.json")])
    cli("evaluate_corrupt_meta", ("distillery.json",), lambda t: (t / "m.json",))(
        lambda t, fx: ["evaluate", *TINY, "--model", str(_corrupt_student(t, fx)), "--data", "synthetic:10",
                       "--out", str(t / "m.json")])
    cli("evaluate_out_is_directory", ("m.json", "directory"), lambda t: (t / "m.png",))(
        lambda t, fx: ["evaluate", *TINY, "--model", str(fx.student()), "--data", "synthetic:10",
                       "--out", str(_mkdir(t / "m.json"))])
    cli("evaluate_unlabelled_data", ("u.jsonl", "label"), lambda t: (t / "m.json",))(
        lambda t, fx: ["evaluate", *TINY, "--model", str(fx.student()), "--out", str(t / "m.json"), "--data",
                       "jsonl:" + str(_write(t / "u.jsonl", '{"query_id": "q", "query": "s", "item_id": "i"}\n'))])
    cli("distill_without_annotations", ("--annotations",), out_absent)(
        lambda t, fx: ["distill", *TINY, "--data", "synthetic:60", "--out", str(t / "out")])
    cli("distill_bad_method", ("--method",), out_absent)(
        lambda t, fx: ["distill", *TINY, "--method", "magic", "--data", "synthetic:60", "--out", str(t / "out")])
    cli("annotate_missing_teacher", ("--teacher",), out_absent)(
        lambda t, fx: ["annotate", *TINY, "--data", "synthetic:60", "--out", str(t / "out")])
    cli("annotate_shard_out_of_range", ("--shard 5",), out_absent)(
        lambda t, fx: ["annotate", *TINY, "--teacher", "tiny", "--data", "synthetic:60", "--shard", "5",
                       "--num-shards", "2", "--out", str(t / "out")])
    cli("annotate_zero_shards", ("--num-shards 0",), out_absent)(
        lambda t, fx: ["annotate", *TINY, "--teacher", "tiny", "--data", "synthetic:60", "--num-shards", "0",
                       "--out", str(t / "out")])
    cli("annotate_student_as_teacher", ("--teacher", "student"), out_absent)(
        lambda t, fx: ["annotate", *TINY, "--teacher", str(fx.student()), "--data", "synthetic:60",
                       "--out", str(t / "out")])
    cli("annotate_empty_teacher_dir", ("--teacher", "empty"), out_absent)(
        lambda t, fx: ["annotate", *TINY, "--teacher", str(_mkdir(t / "empty")), "--data", "synthetic:60",
                       "--out", str(t / "out")])
    cli("annotate_nonexistent_teacher", ("--teacher", "nope"), out_absent)(
        lambda t, fx: ["annotate", *TINY, "--teacher", str(t / "nope"), "--data", "synthetic:60",
                       "--out", str(t / "out")])
    cli("annotate_merge_missing_in", ("--in",), lambda t: (t / "a.jsonl",))(
        lambda t, fx: ["annotate", "merge", "--out", str(t / "a.jsonl")])
    cli("annotate_merge_nonexistent_in", ("nope",), lambda t: (t / "a.jsonl",))(
        lambda t, fx: ["annotate", "merge", "--in", str(t / "nope"), "--out", str(t / "a.jsonl")])
    cli("teacher_no_step", ("step",))(lambda t, fx: ["teacher"])
    cli("teacher_sft_student_as_base", ("--base", "student"), out_absent)(
        lambda t, fx: ["teacher", "sft", *TINY, "--data", "synthetic:60", "--base", str(fx.student()),
                       "--out", str(t / "out")])
    cli("teacher_dpo_without_reward", ("--reward",), out_absent)(
        lambda t, fx: ["teacher", "dpo", *TINY, "--data", "synthetic:60", "--base", str(fx.teacher()),
                       "--out", str(t / "out")])
    cli("teacher_dpo_nonexistent_reward", ("--reward", "nope"), out_absent)(
        lambda t, fx: ["teacher", "dpo", *TINY, "--data", "synthetic:60", "--base", str(fx.teacher()),
                       "--reward", str(t / "nope"), "--out", str(t / "out")])
    cli("teacher_evaluate_student_dir", ("--model", "student"), lambda t: (t / "e.json",))(
        lambda t, fx: ["teacher", "evaluate", *TINY, "--model", str(fx.student()), "--data", "synthetic:20",
                       "--out", str(t / "e.json")])
    cli("teacher_evaluate_negative_max_pairs", ("--max-pairs",), lambda t: (t / "e.json",))(
        lambda t, fx: ["teacher", "evaluate", *TINY, "--model", "tiny", "--data", "synthetic:20",
                       "--max-pairs", "-3", "--out", str(t / "e.json")])
    cli("export_teacher_dir", ("teacher", "not a student"), lambda t: (t / "repo",))(
        lambda t, fx: ["export", *TINY, "--model", str(fx.teacher()), "--data", "synthetic:20",
                       "--out", str(t / "repo")])
    cli("export_empty_model_dir", ("empty", "distillery.json"), lambda t: (t / "repo",))(
        lambda t, fx: ["export", *TINY, "--model", str(_mkdir(t / "empty")), "--data", "synthetic:20",
                       "--out", str(t / "repo")])
    cli("export_nonexistent_model", ("nope",), lambda t: (t / "repo",))(
        lambda t, fx: ["export", *TINY, "--model", str(t / "nope"), "--data", "synthetic:20",
                       "--out", str(t / "repo")])
    cli("export_version_zero", ("--version",), lambda t: (t / "repo",))(
        lambda t, fx: ["export", *TINY, "--model", str(fx.student()), "--data", "synthetic:20", "--version", "0",
                       "--out", str(t / "repo")])
    cli("export_bad_trt_profile", ("--trt-batch",), lambda t: (t / "repo",))(
        lambda t, fx: ["export", *TINY, "--model", str(fx.student()), "--data", "synthetic:20",
                       "--trt-batch", "1,x", "--out", str(t / "repo")])
    cli("export_unknown_variant", ("export.variants",), lambda t: (t / "repo",))(
        lambda t, fx: ["export", *TINY, "--model", str(fx.student()), "--data", "synthetic:20",
                       "--variants", "tflite", "--out", str(t / "repo")])
    cli("serve_without_repo", ("--repo",))(lambda t, fx: ["serve"])
    cli("serve_bad_port", ("--http-port", "70000"))(
        lambda t, fx: ["serve", "--repo", str(_mkdir(t / "repo")), "--http-port", "70000"])
    cli("serve_repo_is_a_file", ("repo.txt",))(
        lambda t, fx: ["serve", "--repo", str(_write(t / "repo.txt", "x")), "--http-port", "0", "--grpc-port", "0",
                       "--metrics-port", "0"])
    cli("abtest_bad_weights", ("--weights",), out_absent)(
        lambda t, fx: ["abtest", *TINY, "--in-process", "--champion", "random", "--challenger", "oracle",
                       "--data", "synthetic:60", "--weights", "50", "--out", str(t / "out")])
    cli("abtest_weights_not_100", ("--weights", "100"), out_absent)(
        lambda t, fx: ["abtest", *TINY, "--in-process", "--champion", "random", "--challenger", "oracle",
                       "--data", "synthetic:60", "--weights", "60,60", "--out", str(t / "out")])
    cli("abtest_negative_users", ("--users",), out_absent)(
        lambda t, fx: ["abtest", *TINY, "--in-process", "--champion", "random", "--challenger", "oracle",
                       "--data", "synthetic:60", "--users", "-5", "--out", str(t / "out")])
    cli("abtest_teacher_as_champion", ("teacher", "not a student"), out_absent)(
        lambda t, fx: ["abtest", *TINY, "--in-process", "--champion", str(fx.teacher()), "--challenger", "oracle",
                       "--data", "synthetic:60", "--out", str(t / "out")])
    cli("abtest_reference_ranker_on_triton", ("--in-process",), out_absent)(
        lambda t, fx: ["abtest", *TINY, "--champion", "random", "--challenger", "oracle",
                       "--data", "synthetic:60", "--out", str(t / "out")])
    cli("run_bad_data_spec", ("xml:pairs.xml",), out_absent)(
        lambda t, fx: ["run", *TINY, "--data", "xml:pairs.xml", "--out", str(t / "out")])
    cli("run_zero_shards", ("--shards",), out_absent)(
        lambda t, fx: ["run", *TINY, "--shards", "0", "--out", str(t / "out")])
    cli("run_bad_set", ("train.lr",), out_absent)(
        lambda t, fx: ["run", *TINY, "--set", "train.lr=-1", "--out", str(t / "out")])
    cli("run_negative_ab_users", ("--ab-users",), out_absent)(
        lambda t, fx: ["run", *TINY, "--ab-users", "-1", "--out", str(t / "out")])


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _corrupt_student(tmp: Path, fx: Fixtures) -> Path:
    import shutil

    d = tmp / "student"
    shutil.copytree(fx.student(), d)
    (d / "distillery.json").write_text('{"label_set": "3cl')
    return d


DR = {"data": {"source": "synthetic:500"}, "output": {"uri": "s3://distillery-runs/r1"}}
RE = {"champion": {"model": "relevance", "version": 1}, "challenger": {"model": "relevance", "version": 2},
      "metricsSource": {"uri": "/var/log/splitter"}}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``a.b.c`` set to ``value`` (``...`` deletes it)."""
    out = json.loads(json.dumps(base))
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return out


def _cr_cases() -> None:
    runs: dict[str, tuple[Any, str]] = {
        "dr_spec_not_mapping": (["synthetic:500"], "spec"),
        "dr_missing_data_source": (_with(DR, "data", ...), "spec.data"),
        "dr_missing_output": (_with(DR, "output", ...), "spec.output"),
        "dr_bad_data_source": (_with(DR, "data.source", "ftp://host/file.csv"), "spec.data.source"),
        "dr_synthetic_zero": (_with(DR, "data.source", "synthetic:0"), "spec.data.source"),
        "dr_output_not_s3": (_with(DR, "output.uri", "/tmp/out"), "spec.output.uri"),
        "dr_shards_wrong_type": (_with(DR, "annotation.shards", "4"), "spec.annotation.shards"),
        "dr_shards_zero": (_with(DR, "annotation.shards", 0), "spec.annotation.shards"),
        "dr_negative_parallelism": (_with(DR, "annotation.parallelism", -2), "spec.annotation.parallelism"),
        "dr_unknown_profile": (_with(DR, "profile", "huge"), "spec.profile"),
        "dr_gpu_not_bool": (_with(DR, "student.gpu", "yes"), "spec.student.gpu"),
        "dr_max_length_too_big": (_with(DR, "student.maxLength", 5000), "spec.student.maxLength"),
        "dr_override_not_string": (_with(DR, "overrides", {"train.lr": 0.1}), "spec.overrides.train.lr"),
        "dr_override_out_of_range": (_with(DR, "overrides", {"train.lr": "nan"}), "spec.overrides"),
        "dr_bad_serving_repository": (_with(DR, "serving.repository", "/models"), "spec.serving.repository"),
        "dr_bad_training_launcher": (_with(DR, "teacher.training.launcher", "slurm"), "spec.teacher.training.launcher"),
        "dr_local_training_on_two_nodes": (_with(DR, "teacher.training.numNodes", 2),
                                           "spec.teacher.training.numNodes"),
        "dr_data_source_without_kind": (_with(DR, "data.source", "s3://data/logs.parquet"), "spec.data.source"),
    }
    for name, (spec, field) in runs.items():
        def dsetup(tmp: Path, fx: Fixtures, spec: Any = spec, field: str = field) -> Probe:
            from distillery.operator.render import pipeline_config
            from distillery.operator.spec import SpecError, parse_distillation_run

            def call() -> None:
                cr = "DistillationRun ml/esci-run"
                pipeline_config(parse_distillation_run(spec, resource=cr), resource=cr)

            return Probe(call=call, errors=(SpecError,), expect=("ml/esci-run", field))

        case("cr", name)(dsetup)

    exps: dict[str, tuple[Any, str]] = {
        "re_missing_champion": (_with(RE, "champion", ...), "spec.champion"),
        "re_version_zero": (_with(RE, "challenger.version", 0), "spec.challenger.version"),
        "re_version_string": (_with(RE, "challenger.version", "2"), "spec.challenger.version"),
        "re_challenger_is_champion": (_with(RE, "challenger.version", 1), "spec.challenger"),
        "re_steps_not_increasing": (_with(RE, "traffic", {"steps": [50, 10, 100]}), "spec.traffic.steps"),
        "re_steps_zero": (_with(RE, "traffic", {"steps": [0, 100]}), "spec.traffic.steps[0]"),
        "re_steps_string": (_with(RE, "traffic", {"steps": "10,50,100"}), "spec.traffic.steps"),
        "re_alpha_out_of_range": (_with(RE, "gate", {"alpha": 0.9}), "spec.gate.alpha"),
        "re_alpha_nan": (_with(RE, "gate", {"alpha": float("nan")}), "spec.gate.alpha"),
        "re_alpha_string": (_with(RE, "gate", {"alpha": "0.05"}), "spec.gate.alpha"),
        "re_negative_error_rate": (_with(RE, "gate", {"maxErrorRate": -0.1}), "spec.gate.maxErrorRate"),
        "re_unknown_guardrail": (_with(RE, "gate", {"guardrailMetrics": ["revenue"]}),
                                 "spec.gate.guardrailMetrics[0]"),
        "re_missing_metrics_source": (_with(RE, "metricsSource", ...), "spec.metricsSource"),
        "re_negative_interval": (_with(RE, "analysisIntervalSeconds", -5), "spec.analysisIntervalSeconds"),
        "re_bad_configmap": (_with(RE, "splitter", {"configMap": "Bad_Name"}), "spec.splitter.configMap"),
        "re_gate_not_mapping": (_with(RE, "gate", [1, 2]), "spec.gate"),
    }
    for name, (spec, field) in exps.items():
        def esetup(tmp: Path, fx: Fixtures, spec: Any = spec, field: str = field) -> Probe:
            from distillery.operator.spec import SpecError, parse_relevance_experiment

            return Probe(call=lambda: parse_relevance_experiment(spec, resource="RelevanceExperiment ml/relevance-v2"),
                         errors=(SpecError,), expect=("ml/relevance-v2", field))

        case("cr", name)(esetup)


_data_cases()
_config_cases()
_annotation_cases()
_cli_cases()
_cr_cases()

CATEGORIES = ("data", "config", "cli", "annotation", "cr")
