"""The core CLI verbs, run in-process on a tiny random model."""

import json

import numpy as np
import pytest
from conftest import SENTENCES
from sentence_transformers import SentenceTransformer

import mote
from mote.cli import main


def test_convert_info_encode_export(tiny_bert, tmp_path, capsys):
    out = tmp_path / "tiny-mote"
    assert (
        main(["convert", tiny_bert, str(out), "--placement", "0,2", "--tasks", "query@0,document@0,clustering"]) == 0
    )
    assert (out / "mote_config.json").is_file()
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "expert layers: [0, 2]" in info and "'search_query: '" in info and "-> expert 0" in info

    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(SENTENCES) + "\n")
    npy = tmp_path / "emb.npy"
    assert main(["encode", str(out), "--task", "clustering", "--input", str(texts), "--output", str(npy)]) == 0
    emb = np.load(npy)
    model = mote.load(out)
    np.testing.assert_allclose(emb, model.encode(SENTENCES, task="clustering"), atol=1e-6)

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": s}) for s in SENTENCES))
    assert main(["encode", str(out), "--task", "query", "--input", str(jsonl), "--output", str(npy)]) == 0
    assert np.load(npy).shape == (len(SENTENCES), 32)

    dense_dir = tmp_path / "dense-query"
    assert main(["export", str(out), str(dense_dir), "--task", "query"]) == 0
    dense = SentenceTransformer(str(dense_dir), device="cpu")
    np.testing.assert_allclose(dense.encode(SENTENCES), model.encode(SENTENCES, task="query"), atol=1e-5)


def test_cli_errors_are_clear(tiny_bert, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["convert", tiny_bert, str(out)]) == 0
    assert main(["convert", tiny_bert, str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    texts = tmp_path / "t.txt"
    texts.write_text("a\n")
    assert (
        main(["encode", str(out), "--task", "nope", "--input", str(texts), "--output", str(tmp_path / "e.npy")]) == 2
    )
    err = capsys.readouterr().err
    assert "Unknown task 'nope'" in err and "search_document" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    assert main(["encode", str(out), "--task", "query", "--input", str(bad), "--output", str(tmp_path / "e.npy")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["info", tiny_bert]) == 2
    assert "not a MoTE model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "--help"])


def test_demo_without_training_converts_routes_and_is_exact(minilm, tmp_path, capsys):
    assert main(["demo", "--no-train", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "max |MoTE - dense| over all tasks: 0.00e+00" in out
    assert mote.load(tmp_path / "mote-minilm").encode(["hi"], task="query").shape == (1, 384)
