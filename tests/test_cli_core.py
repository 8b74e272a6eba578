"""The core CLI verbs, run in-process on a tiny random model."""

import json
import shutil

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
    assert main(["encode", str(out), "--task", "query", "--input", str(jsonl), "--output", str(npy)]) == 2  # exists
    assert main(["encode", str(out), "--task", "query", "--input", str(jsonl), "--output", str(npy),
                 "--overwrite"]) == 0
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


def test_damaged_model_folders_get_errors_naming_the_file_and_the_fix(tiny_bert, tmp_path, capsys):
    good = tmp_path / "m"
    assert main(["convert", tiny_bert, str(good)]) == 0
    capsys.readouterr()

    broken = tmp_path / "missing-key"
    shutil.copytree(good, broken)
    cfg = json.loads((broken / "mote_config.json").read_text())
    del cfg["expert_layers"]
    (broken / "mote_config.json").write_text(json.dumps(cfg))
    assert main(["info", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "mote_config.json lacks ['expert_layers']" in err and "save (or copy) the model again" in err

    (broken / "mote_config.json").write_text('{"routing": ')  # torn JSON
    assert main(["info", str(broken)]) == 2
    assert "mote_config.json is not readable JSON" in capsys.readouterr().err

    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated copy
    assert main(["info", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is not a readable safetensors file" in err and "again" in err


def test_encode_checks_its_output_before_any_work(tmp_path, capsys):
    # neither the model nor the input exists: the --output problem is reported first, before loading anything
    assert main(["encode", str(tmp_path / "no-model"), "--task", "query", "--input", str(tmp_path / "no.txt"),
                 "--output", str(tmp_path / "x.txt")]) == 2
    assert "--output must end in .npy" in capsys.readouterr().err


def test_bad_task_spec_is_a_clear_error(tiny_bert, tmp_path, capsys):
    assert main(["convert", tiny_bert, str(tmp_path / "m"), "--tasks", "query@x,document"]) == 2
    err = capsys.readouterr().err
    assert "Task spec 'query@x'" in err and "expert number" in err and "int()" not in err
    assert not (tmp_path / "m").exists()


def test_a_type_error_is_a_bug_and_keeps_its_traceback(monkeypatch):
    import mote.cli

    def buggy(args):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(mote.cli, "cmd_info", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["info", "whatever"])


def test_token_routed_models_refuse_export_and_describe_themselves(tiny_bert, tmp_path, capsys):
    from mote.ablations import tlr
    from mote.lora import MoELoRAConfig
    from mote.lora import convert as tsembed_convert

    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(SENTENCES) + "\n")
    npy = tmp_path / "e.npy"

    folder = tmp_path / "tlr"
    model = tlr.convert(tiny_bert, placement="every")
    model.save(str(folder))
    assert main(["export", str(folder), str(tmp_path / "out"), "--task", "query"]) == 2
    err = capsys.readouterr().err
    assert "token-routed" in err and "cannot be exported" in err and not (tmp_path / "out").exists()
    assert main(["info", str(folder)]) == 0
    info = capsys.readouterr().out
    assert "token-routed (TLR)" in info and "-> expert" not in info and "export: none" in info
    assert main(["encode", str(folder), "--task", "query", "--input", str(texts), "--output", str(npy)]) == 0
    np.testing.assert_allclose(np.load(npy), model.encode(SENTENCES, task="query"), atol=1e-6)

    for routing in ("token", "sequence"):
        folder = tmp_path / f"tsembed-{routing}"
        model = tsembed_convert(tiny_bert, MoELoRAConfig(num_experts=4, r=4, routing=routing))
        model.save(str(folder))
        with pytest.raises(mote.NotAMoTEModelError, match="mote.lora.load"):
            mote.load(folder)
        assert main(["info", str(folder)]) == 0
        info = capsys.readouterr().out
        assert f"top-1 {routing} routing" in info or f"{routing} routing" in info
        assert main(["encode", str(folder), "--task", "query", "--input", str(texts), "--output", str(npy),
                     "--overwrite"]) == 0
        np.testing.assert_allclose(np.load(npy), model.encode(SENTENCES, task="query"), atol=1e-6)
        out = tmp_path / f"dense-{routing}"
        if routing == "token":
            assert main(["export", str(folder), str(out), "--task", "query"]) == 2
            assert "routes tokens" in capsys.readouterr().err and not out.exists()
        else:
            assert main(["export", str(folder), str(out), "--task", "query"]) == 0
            dense = SentenceTransformer(str(out), device="cpu")
            np.testing.assert_allclose(dense.encode(SENTENCES), model.encode(SENTENCES, task="query"), atol=1e-5)
