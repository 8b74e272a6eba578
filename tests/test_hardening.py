"""Issue 27 (hardening, round two): each case reproduced on a tiny model and checked at its cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from tiny_train import write_tiny_model

import mote
from mote.files import ModelFolderError


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return write_tiny_model(tmp_path_factory.mktemp("base") / "tiny", dropout=0.0)


def distinct_experts(model, seed: int = 0):
    """Perturb every stacked expert weight, so that routing mistakes are visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model[0].auto_model.parameters():
            if p.dim() >= 2 and p.shape[0] == model[0].num_experts:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model


@pytest.fixture(scope="module")
def tiny_mote(tiny_base):
    return distinct_experts(mote.convert(tiny_base, placement="every"))


# ------------------------------------------------------------------------------------------------ 1. task lists
def test_sentence_transformer_encode_keeps_each_texts_task(tiny_mote, tmp_path):
    texts = ["short", "a much longer sentence about magnets and iron"]
    tasks = ["query", "clustering"]
    want = mote.encode(tiny_mote, texts, task=tasks)
    assert np.abs(tiny_mote.encode(texts, task=tasks) - want).max() <= 1e-6
    many = [("word " * (i % 9)) + str(i) for i in range(21)]
    many_tasks = [list(mote.DEFAULT_TASKS)[i % 4] for i in range(21)]
    want = mote.encode(tiny_mote, many, task=many_tasks, batch_size=4)
    assert np.abs(tiny_mote.encode(many, task=many_tasks, batch_size=4) - want).max() <= 1e-6
    tiny_mote.save(str(tmp_path / "m"))
    loaded = SentenceTransformer(str(tmp_path / "m"), device="cpu")  # the hook also runs on load
    assert np.abs(loaded.encode(many, task=many_tasks, batch_size=4) - want).max() <= 1e-6
    with pytest.raises(ValueError, match="Got 3 tasks for 21 texts"):
        tiny_mote.encode(many, task=many_tasks[:3])


def test_a_task_list_that_reached_forward_sorted_is_refused(tiny_mote):
    features = tiny_mote.preprocess(["a", "bb"], task=["query", "document"])
    with pytest.raises(ValueError, match="mote.encode"):
        tiny_mote[0](features, task=["query", "document"])


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def saved_mote(tiny_mote, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "mote"
    tiny_mote.save(str(path))
    return path


@pytest.fixture
def folder(saved_mote, tmp_path) -> Path:
    """A fresh copy of the saved tiny MoTE folder, to damage."""
    return Path(shutil.copytree(saved_mote, tmp_path / "copy"))


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for k, v in changes.items():
        if v is DELETE:
            data.pop(k, None)
        else:
            data[k] = v
    path.write_text(json.dumps(data))


DELETE = object()


# ------------------------------------------------------------------------------------------------ 5. damaged folders
def test_config_that_disagrees_with_the_weights_is_refused_before_loading(folder, tiny_base):
    edit_json(folder / "mote_config.json", files_sha256=DELETE)  # as hand-assembled: shapes are still checked
    edit_json(folder / "config.json", hidden_size=48)  # old: a RuntimeError of load_state_dict (size mismatch)
    with pytest.raises(ModelFolderError, match=r"safetensors does not match .*hidden_size 48.*save \(or copy\)"):
        mote.load(folder)


def test_weights_of_another_model_are_refused(folder, tiny_base, tmp_path):
    three = mote.RoutingTable.from_spec("query,document,clustering")
    other = mote.convert(tiny_base, placement="every", routing=three)
    other.save(str(tmp_path / "other"))
    shutil.copy(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ModelFolderError, match="different saves|SHA-256|does not match"):
        mote.load(folder)
    edit_json(folder / "mote_config.json", mote_save_id=DELETE, files_sha256=DELETE)  # no save id to compare
    with pytest.raises(ModelFolderError, match=r"is \[3, 32\] in the weights, \[4, 32\] by the configs"):
        mote.load(folder)


@pytest.mark.parametrize(("changes", "message"), [
    ({"expert_layers": [0, 9]}, r"expert_layers \[9\] are out of range: the encoder .* has layers 0\.\.1"),
    ({"expert_layers": "0,1"}, "expert_layers must be a non-empty list"),
    ({"expert_layers": [0.5]}, "expert_layers must be a non-empty list"),
    ({"format_version": "1"}, "format_version must be a whole number"),
    ({"max_seq_length": 0}, "max_seq_length must be a whole number of tokens >= 1"),
    ({"max_seq_length": 10_000}, "exceeds the 64 positions"),
    ({"num_experts": "4"}, "num_experts must be a whole number"),
])
def test_bad_mote_config_fields_name_the_field_and_the_fix(folder, changes, message):
    edit_json(folder / "mote_config.json", **changes)
    with pytest.raises(ModelFolderError, match=message) as e:
        mote.load(folder)
    assert "mote_config.json" in str(e.value)


def test_routing_with_fewer_tasks_than_the_experts_is_refused(folder):
    config = json.loads((folder / "mote_config.json").read_text())
    config["routing"]["tasks"] = [t for t in config["routing"]["tasks"] if t["name"] != "clustering"]
    (folder / "mote_config.json").write_text(json.dumps(config))  # old: loaded, `mote info` said 3 experts
    with pytest.raises(ModelFolderError, match=r"routes to 3 expert\(s\) but its layers hold num_experts 4"):
        mote.load(folder)


def test_truncated_tokenizer_json_names_the_file(folder):
    data = (folder / "tokenizer.json").read_bytes()
    (folder / "tokenizer.json").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match=r"tokenizer\.json is not the file .* saved with"):
        mote.load(folder)
    edit_json(folder / "mote_config.json", files_sha256=DELETE)  # as hand-assembled: the tokenizer's own error
    with pytest.raises(ModelFolderError, match=r"tokenizer\.json.*cannot be read"):
        mote.load(folder)


def test_a_relative_path_that_does_not_exist_never_goes_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="'runs/typo': no such folder"):
        mote.load("runs/typo")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        mote.convert("./nowhere/base")


def test_compare_refuses_zero_bootstrap_resamples(tmp_path):
    from mote.eval.compare import compare
    from mote.eval.stats import paired_bootstrap

    with pytest.raises(ValueError, match="--n-boot"):  # old: an IndexError from np.percentile of nothing
        compare([tmp_path / "a", tmp_path / "b"], n_boot=0)
    with pytest.raises(ValueError, match="--n-boot"):
        paired_bootstrap("retrieval", {}, {}, n_boot=0)


def test_non_utf8_input_and_recipe_name_the_file(tmp_path):
    from mote.files import read_texts
    from mote.train.config import ConfigError, load_config

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not readable as UTF-8"):
        read_texts(bad)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes("arm: mote\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"(?s)recipe\.yaml.*not UTF-8"):
        load_config(recipe)


def test_the_cli_turns_library_errors_into_one_line(folder, capsys, monkeypatch):
    from mote.cli import main

    monkeypatch.delenv("MOTE_DEBUG", raising=False)
    edit_json(folder / "mote_config.json", expert_layers=[7])
    assert main(["info", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "expert_layers [7] are out of range" in err and "Traceback" not in err
    with pytest.raises(ModelFolderError):
        main(["info", str(folder), "--debug"])
    monkeypatch.setenv("MOTE_DEBUG", "1")
    with pytest.raises(ModelFolderError):
        main(["info", str(folder)])


# ------------------------------------------------------------------------------------------------ 6. trust
def test_convert_refuses_a_task_named_twice(tiny_base, tmp_path, capsys):
    from mote.cli import main

    with pytest.raises(ValueError, match="names task 'query' twice"):
        mote.RoutingTable.from_spec("query,query")
    assert main(["convert", tiny_base, str(tmp_path / "m"), "--tasks", "query,query"]) == 2
    assert "twice" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_modules_json_paths_stay_inside_the_folder(folder):
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["path"] = "../../elsewhere"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFolderError, match="leaves the model folder"):
        mote.load(folder)


def test_tsembed_adapter_folder_is_resolved_inside_the_model_folder(tiny_base, tmp_path):
    from mote.lora.st import NotATSEmbedModelError
    from mote.lora.st import convert as convert_tsembed
    from mote.lora.st import load as load_tsembed

    model = convert_tsembed(tiny_base)
    path = tmp_path / "ts"
    model.save(str(path))
    outside = tmp_path / "planted"
    shutil.copytree(path / "moe_lora", outside)  # a complete adapter folder outside the model folder
    for name in ("../planted", str(outside), ".", ""):
        edit_json(path / "tsembed_config.json", adapter_folder=name)
        with pytest.raises(NotATSEmbedModelError, match="adapter_folder"):
            load_tsembed(path)
    assert issubclass(NotATSEmbedModelError, ModelFolderError)
    edit_json(path / "tsembed_config.json", adapter_folder="moe_lora")
    load_tsembed(path)


def test_the_docs_do_not_send_users_to_trust_remote_code_for_foreign_folders():
    root = Path(__file__).parents[1]
    assert "did not make" in (root / "README.md").read_text()  # the README's one-line warning
    readme = (root / "docs" / "usage.md").read_text()
    section = readme[readme.index("**sentence-transformers 6 and `trust_remote_code`.**"):]
    section = section[: section.index("\n\n")]
    assert "import mote" in section and "never" in section.lower()
    assert "did not make" in section or "do not trust" in section


# ------------------------------------------------------------------------------------------------ 3. one publish
def test_a_killed_export_with_onnx_keeps_the_previous_output(saved_mote, tmp_path, monkeypatch):
    import mote.onnx
    from mote.cli import main

    out = tmp_path / "query"
    assert main(["export", str(saved_mote), str(out), "--task", "query", "--onnx"]) == 0
    assert (out / "onnx" / "model.onnx").is_file() and (out / "model.safetensors").is_file()
    meta = json.loads((out / "onnx" / "mote_onnx.json").read_text())
    assert meta["exported_from"] == str(out.resolve())  # the published folder, not the staging one
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def killed(folder, **kwargs):  # the ONNX step dies after the dense folder is complete
        (Path(folder) / "onnx").mkdir()
        (Path(folder) / "onnx" / "model.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(mote.onnx, "export_onnx", killed)
    assert main(["export", str(saved_mote), str(out), "--task", "document", "--onnx", "--overwrite"]) == 130
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # old: the new dense folder was already swapped in, the old onnx/ gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["query"]  # no staging or lock file left behind


# ------------------------------------------------------------------------------------------------ 4. one writer
LOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)  # what mote.atomic.output_lock takes, in another process
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_writer_of_one_output_gets_a_clear_error(tmp_path):
    import subprocess
    import sys

    from mote.atomic import OutputLockedError, atomic_dir, lock_path

    target = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(lock_path(target))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match="being written by another process"), atomic_dir(target) as tmp:
            (tmp / "x").write_text("second writer")  # old: both writers published, the last one won
        assert not target.exists()
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    with atomic_dir(target) as tmp:  # released with its holder
        (tmp / "x").write_text("now")
    with pytest.raises(FileExistsError), atomic_dir(target):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_two_exports_into_one_folder(saved_mote, tmp_path, capsys):
    from mote.atomic import output_lock
    from mote.cli import main

    out = tmp_path / "dense"
    with output_lock(out):  # another `mote export` is writing it
        assert main(["export", str(saved_mote), str(out), "--task", "query"]) == 2
    assert "being written by another process" in capsys.readouterr().err and not out.exists()


def test_encode_refuses_an_existing_output(saved_mote, tmp_path, capsys):
    from mote.cli import main

    texts, npy = tmp_path / "in.txt", tmp_path / "e.npy"
    texts.write_text("a\nb\n")
    npy.write_bytes(b"precious")
    args = ["encode", str(saved_mote), "--task", "query", "--input", str(texts), "--output", str(npy)]
    assert main(args) == 2  # old: overwritten
    assert "--overwrite" in capsys.readouterr().err and npy.read_bytes() == b"precious"
    assert main([*args, "--overwrite"]) == 0 and np.load(npy).shape == (2, 32)
