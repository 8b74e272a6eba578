"""A weight snapshot folder (``RUN/snapshots/step-N``) is a model: ``mote.load`` / ``mote.api.load_snapshot``, the
CLI verbs and ``mote eval`` open it as the run's model with the snapshot's weights, bitwise; ``mote select RUN
--at-step N`` selects among what existed at step N; bad snapshot folders are one line naming the fix."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

import mote
from mote.api import encoder_of, load_snapshot, snapshot_source
from mote.cli import main
from mote.files import ModelFolderError
from mote.select.config import SelectConfig
from mote.select.weights import WeightSpace
from mote.train.snapshots import list_snapshots

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["how do magnets work", "a rocket reached orbit", "i love my bread and cheese"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs of 6 steps (mote and ic) that kept snapshots at steps 2 and 4, and the data they trained on
    (with the toy evaluation sets)."""
    from test_eval_support import make_data_dir
    from tiny_train import tiny_config, write_tiny_data, write_tiny_model

    from mote.train.config import parse_config
    from mote.train.trainer import run_training

    root = tmp_path_factory.mktemp("snap")
    data = write_tiny_data(root / "data")
    make_data_dir(data)
    base = write_tiny_model(root / "bert")
    out = {"data": data}
    for method in ("mote", "ic"):
        raw = tiny_config(base, data, method=method, data={"data_dir": str(data), "holdout": 0.3},
                          select={"enabled": False, "snapshots": [1 / 3, 2 / 3]}, checkpoint={"every": 100, "keep": 1})
        run_training(parse_config(raw, check_files=True), root / method)
        assert list(list_snapshots(root / method)) == ["step-2", "step-4"]
        out[method] = root / method
    return out


def reference(run: Path, step: int) -> SentenceTransformer:
    """What the lab's make_point built: the run's trained model with the snapshot's state dict loaded into its
    encoder."""
    model_dir = run / "model"
    model = mote.load(model_dir) if (model_dir / "mote_config.json").is_file() else SentenceTransformer(
        str(model_dir), device="cpu")
    encoder_of(model).load_state_dict(load_file(str(run / "snapshots" / f"step-{step}" / "model.safetensors")))
    return model


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ loading
def test_a_snapshot_folder_loads_as_the_runs_model_with_the_snapshots_weights_bitwise(runs):
    run = runs["mote"]
    snap = run / "snapshots" / "step-2"
    assert snapshot_source(snap) == (run / "model", snap / "model.safetensors")
    assert snapshot_source(run / "model") is None and snapshot_source("all-MiniLM-L6-v2") is None
    got, ref, final = mote.load(snap), reference(run, 2), mote.load(run / "model")
    assert got[0].routing == final[0].routing and got[0].expert_layers == final[0].expert_layers
    for task in ("query", "document", "classification", "clustering"):
        a, b = mote.encode(got, TEXTS, task=task), mote.encode(ref, TEXTS, task=task)
        assert np.array_equal(a, b), task
        assert not np.allclose(a, mote.encode(final, TEXTS, task=task)), task  # trained on after step 2
    want = encoder_of(ref).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in encoder_of(got).state_dict().items())


def test_a_dense_runs_snapshot_loads_with_load_snapshot_and_mote_load_names_it(runs):
    run = runs["ic"]
    snap = run / "snapshots" / "step-4"
    got, ref = load_snapshot(snap), reference(run, 4)
    final = SentenceTransformer(str(run / "model"), device="cpu")
    assert np.array_equal(got.encode(TEXTS), ref.encode(TEXTS))
    assert not np.allclose(got.encode(TEXTS), final.encode(TEXTS))
    with pytest.raises(mote.NotAMoTEModelError, match=r"not a MoTE model: load it with mote.api.load_snapshot"):
        mote.load(snap)


def test_the_cli_verbs_take_a_snapshot_folder(runs, tmp_path, capsys):
    run = runs["mote"]
    snap = run / "snapshots" / "step-4"
    texts = tmp_path / "q.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    assert main(["encode", str(snap), "--task", "query", "--input", str(texts), "--output", str(tmp_path / "q.npy")]) \
        == 0
    assert np.array_equal(np.load(tmp_path / "q.npy"), mote.encode(reference(run, 4), TEXTS, task="query"))
    assert main(["info", str(snap)]) == 0
    assert "expert layers" in capsys.readouterr().out
    assert main(["export", str(snap), str(tmp_path / "dense"), "--task", "document"]) == 0
    dense = SentenceTransformer(str(tmp_path / "dense"), device="cpu").encode(TEXTS)
    assert np.abs(dense - mote.encode(reference(run, 4), TEXTS, task="document")).max() <= 1e-5


@pytest.mark.parametrize("method", ["mote", "ic"])
def test_mote_eval_scores_a_snapshot_folder_as_its_model(runs, tmp_path, method):
    from mote.eval.encoders import load_encoder

    run = runs[method]
    snap = run / "snapshots" / "step-2"
    out = tmp_path / "eval"
    assert main(["eval", str(snap), "--datasets", "ToySTS", "--data-dir", str(runs["data"]), "--output", str(out),
                 "--no-cache", "--split", "test"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == "step-2"
    assert res["model_identity"] == load_encoder(reference(run, 2), mode="auto").identity
    assert res["model_identity"] != load_encoder(str(run / "model"), mode="auto").identity
    # the library call takes the snapshot path as it is, like the CLI
    direct = load_encoder(str(snap), mode="auto")
    assert direct.identity == res["model_identity"] and direct.name == "step-2"


# ------------------------------------------------------------------------------------------------ select at a step
def test_select_at_a_step_sees_only_what_existed_then_and_writes_to_output(runs, tmp_path):
    from mote.select.record import read_selection
    from mote.select.run import select_run

    run = runs["mote"]
    before = _tree_digest(run / "model")
    space = WeightSpace.from_run(run, at_step=4)
    assert space.endpoint_names() == ["final", "step-2"]
    assert WeightSpace.from_run(run).endpoint_names() == ["final", "step-2", "step-4"]  # at the end: both
    snap = load_file(str(run / "snapshots" / "step-4" / "model.safetensors"))
    assert all(torch.equal(space.endpoints["final"][k], v) for k, v in snap.items())
    assert all(torch.equal(p, snap[n]) for n, p in space.params.items())  # the model stands at step 4 too

    cfg = SelectConfig(alphas=[0.5, 1.0], snapshots=[1 / 3, 2 / 3], consolidate={"enabled": False})
    out = select_run(run, tmp_path / "at4", cfg, at_step=4, cache=tmp_path / "cache", log=lambda m: None)
    record = read_selection(out)
    assert out == tmp_path / "at4" and record["at_step"] == 4 and record["run"] == str(run)
    assert record["grid"] == ["base", "final@0.5", "final", "step-2"]
    assert "at step 4" in (out / "selection.md").read_text().splitlines()[0]
    assert mote.encode(mote.load(out), TEXTS, task="query").shape == (3, 32)
    assert _tree_digest(run / "model") == before and not (run / "trained").exists()  # the run's own model: as it was


# ------------------------------------------------------------------------------------------------ bad input
def _one_line_error(capsys, argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err


def test_select_at_a_step_needs_output_and_a_kept_step(runs, tmp_path, capsys):
    run = str(runs["mote"])
    _one_line_error(capsys, ["select", run, "--at-step", "4"], "name its folder with --output")
    _one_line_error(capsys, ["select", run, "--at-step", "4", "--output", f"{run}/model"],
                    "name its folder with --output")
    _one_line_error(capsys, ["select", run, "--at-step", "3", "--output", str(tmp_path / "x")],
                    "kept no weight snapshot at step 3: it kept steps [2, 4]")
    assert not (tmp_path / "x").exists()


def _fake_run(tmp_path: Path, model_from: Path | None, snapshot_from: Path) -> Path:
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    shutil.copytree(snapshot_from, run / "snapshots" / snapshot_from.name)
    if model_from is not None:
        shutil.copytree(model_from, run / "model")
    return run / "snapshots" / snapshot_from.name


def test_a_snapshot_of_an_unfinished_run_is_one_line(runs, tmp_path, capsys):
    snap = _fake_run(tmp_path, None, runs["mote"] / "snapshots" / "step-2")
    _one_line_error(capsys, ["info", str(snap)], "is a snapshot of a run that has not finished")
    _one_line_error(capsys, ["eval", str(snap), "--datasets", "ToySTS", "--data-dir", str(runs["data"]),
                              "--output", str(tmp_path / "e")],
                    "has no trained/ or model/ yet")
    _one_line_error(capsys, ["select", str(snap.parents[1]), "--at-step", "2", "--output", str(tmp_path / "s")],
                    "is not a finished `mote train` run")


def test_a_snapshot_that_does_not_fit_the_runs_model_is_one_line(runs, tmp_path, capsys):
    snap = _fake_run(tmp_path, runs["mote"] / "model", runs["ic"] / "snapshots" / "step-2")  # a dense run's weights
    _one_line_error(capsys, ["info", str(snap)], "does not fit the model")
    with pytest.raises(ModelFolderError, match="it is a snapshot of another model"):
        mote.load(snap)


def test_a_folder_named_like_a_snapshot_without_snapshot_json_is_one_line(runs, tmp_path, capsys):
    snap = _fake_run(tmp_path, runs["mote"] / "model", runs["mote"] / "snapshots" / "step-2")
    (snap / "snapshot.json").unlink()
    _one_line_error(capsys, ["info", str(snap)], "is named like a weight snapshot but has no snapshot.json")
    (snap / "snapshot.json").write_text(json.dumps({"step": 4, "fraction": 0.66}))
    (tmp_path / "q.txt").write_text("hi\n")
    _one_line_error(capsys, ["encode", str(snap), "--task", "query", "--input", str(tmp_path / "q.txt"),
                             "--output", str(tmp_path / "x.npy")], "not of its folder's step 2")


def test_a_snapshots_model_folder_never_leads_out_of_the_run(runs, tmp_path):
    snap = _fake_run(tmp_path, None, runs["mote"] / "snapshots" / "step-2")
    (snap.parents[1] / "model").symlink_to(runs["mote"] / "model", target_is_directory=True)
    with pytest.raises(ModelFolderError, match="leads out of the run folder"):
        snapshot_source(snap)
