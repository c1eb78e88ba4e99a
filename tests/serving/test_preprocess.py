"""The server-side tokenizer builds exactly the student's in-process inputs."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.data.schema import Pair
from distillery.serving.preprocess import RequestError, TextEncoder, decode_text_tensor, item_text
from tests.serving.conftest import ITEMS, QUERIES


def test_encoder_matches_student_encode(students):
    from transformers import AutoTokenizer

    from distillery.student.model import encode

    enc = TextEncoder.from_dir(students[0])
    got = enc.encode(QUERIES, ITEMS)
    texts = [item_text(t, enc.item_fields) for t in ITEMS]
    ref = encode(AutoTokenizer.from_pretrained(students[0]), QUERIES, texts, enc.max_length)
    assert set(got) == set(ref)
    for name, arr in got.items():
        np.testing.assert_array_equal(arr, ref[name].numpy(), err_msg=name)
    assert got["input_ids"].shape[1] == enc.max_length  # the long item was truncated, not the query


def test_json_item_joins_fields_like_pair():
    pair = Pair(query_id="q", query="x", item_id="i", title=" Mug ", brand="", color="blue", attributes="ceramic")
    fields = ["title", "brand", "color", "attributes"]
    obj = '{"title": " Mug ", "brand": "", "color": "blue", "attributes": "ceramic", "extra": 1}'
    assert item_text(obj, fields) == pair.item_text(fields) == "Mug | blue | ceramic"
    assert item_text("{not json", fields) == "{not json"
    assert item_text("plain title", fields) == "plain title"


def test_decode_text_tensor_shapes_and_errors():
    arr = np.array([["é".encode()], [b"b"]], dtype=np.object_)
    assert decode_text_tensor("QUERY", arr) == ["é", "b"]
    with pytest.raises(RequestError, match="'ITEM' is missing"):
        decode_text_tensor("ITEM", None)
    with pytest.raises(RequestError, match=r"expected shape \(batch, 1\)"):
        decode_text_tensor("QUERY", np.zeros((2, 2), dtype=np.object_))
    with pytest.raises(RequestError, match="row 1: not UTF-8"):
        decode_text_tensor("QUERY", np.array([[b"ok"], [b"\xff"]], dtype=np.object_))


def test_row_count_mismatch_is_named(students):
    enc = TextEncoder.from_dir(students[0])
    with pytest.raises(RequestError, match="QUERY has 2 rows but ITEM has 1"):
        enc.encode(["a", "b"], ["c"])


def test_missing_tokenizer_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        TextEncoder.from_dir(tmp_path)
