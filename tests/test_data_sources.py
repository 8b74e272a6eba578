"""Training-data sources: local JSONL(.gz)/Parquet, dataset folders, hub ids, and the test-split refusal."""

from __future__ import annotations

import json

import pytest
from tiny_train import write_tiny_data

from mote.data.sources import (
    DataSourceError,
    Source,
    TestSplitError,
    is_test_split,
    load_records,
    resolve_file,
    split_files,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp("data"))


def test_test_splits_are_recognised():
    assert is_test_split("test") and is_test_split("test-mteb51534") and is_test_split("TEST")
    assert not is_test_split("train") and not is_test_split("validation") and not is_test_split("contest")


def test_folder_source_refuses_test_split(root):
    with pytest.raises(TestSplitError, match="refusing to train on a test split"):
        load_records(Source("toy", folder="ToyClassification", split="test"), root)
    # the train split of the same evaluation set is fine
    rows = load_records(Source("toy", folder="ToyClassification", split="train"), root)
    assert rows and set(rows[0]) == {"text", "label"}


def test_path_source_refuses_a_test_file(root):
    path = root / "ToyClassification" / "test.jsonl.gz"
    with pytest.raises(TestSplitError, match="test file"):
        load_records(Source("toy", path=str(path)), root)


def test_missing_split_lists_the_trainable_ones(root):
    with pytest.raises(DataSourceError, match=r"no 'validation' split; trainable splits there: \['train'\]"):
        resolve_file(Source("toy", folder="ToyClassification", split="validation"), root)
    with pytest.raises(DataSourceError, match="no dataset folder"):
        resolve_file(Source("nope", folder="train-nope"), root)
    assert set(split_files(root / "ToyClassification")) == {"train", "test"}


def test_jsonl_plain_gz_and_parquet_load_the_same_rows(root, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = load_records(Source("qa", folder="train-toyqa"), root)
    plain = tmp_path / "qa.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = pa.Table.from_pylist([{"query": r["query"], "positive": r["positive"]} for r in rows])
    pq.write_table(table, tmp_path / "qa.parquet")
    assert load_records(Source("qa", path=str(plain)), None) == rows
    got = load_records(Source("qa", path=str(tmp_path / "qa.parquet")), None)
    assert [(r["query"], r["positive"]) for r in got] == [(r["query"], r["positive"]) for r in rows]
    assert len(load_records(Source("qa", path=str(plain)), None, limit=5)) == 5


def test_bad_json_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "positive": "b"}\n{not json\n')
    with pytest.raises(DataSourceError, match=r"bad.jsonl:2: not valid JSON"):
        load_records(Source("bad", path=str(bad)), None)


def test_hub_source_errors_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataSourceError, match="could not load Hugging Face dataset 'nobody-xyz/no-such-dataset'"):
        load_records(Source("x", hf="nobody-xyz/no-such-dataset"), None)
    with pytest.raises(TestSplitError):
        load_records(Source("x", hf="nobody-xyz/no-such-dataset", split="test"), None)
