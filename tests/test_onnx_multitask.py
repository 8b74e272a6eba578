"""One ONNX graph for every task (mote.onnx.export_multitask): exact vs torch MoTE per task and mixed, torch-free.

The MoTE model's experts are perturbed so every task's embedding differs; the ONNX embeddings are computed in a
subprocess where torch, transformers and sentence-transformers cannot be imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from test_onnx import NO_TORCH, assert_exact, cosines, sample_texts, src_env

import mote
from mote.ablations.tlr import to_token_routing
from mote.cli import main as cli_main
from mote.export import export_dense
from mote.onnx import MultiTaskOnnxEncoder, OnnxVerificationError, UnknownTaskIdError, export_multitask

TASKS = ["query", "document", "classification", "clustering"]


@pytest.fixture(scope="module")
def tiny_mote(perturbed_mote):
    """A tiny MoTE model with perturbed experts and its saved folder (conftest: shared with test_serve.py)."""
    return perturbed_mote


@pytest.fixture(scope="module")
def exported(perturbed_mote_onnx):
    """`mote export MODEL --onnx --all-tasks OUT` (the CLI verb), once (conftest: test_serve.py serves it too)."""
    return perturbed_mote_onnx


def test_graph_has_task_id_input_dynamic_axes_and_weights_once(tiny_mote, exported):
    model, _ = tiny_mote
    meta = json.loads((exported / "mote_onnx.json").read_text())
    assert meta["kind"] == "multitask" and [t["name"] for t in meta["tasks"]] == TASKS
    v = meta["verification"]
    assert v["min_cosine"] >= 0.9999 and v["texts_source"] == "STSBenchmark" and v["truncated"] >= 1
    assert {f"{t}_min_cosine" for t in [*TASKS, "mixed", "token_ids"]} <= set(v["checks"])
    proto = onnx.load(str(exported / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask", "token_type_ids", "task_id"]
    for inp in proto.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert all(d.dim_param and not d.dim_value for d in dims), inp
    # Shared weights once, expert stacks once: the graph's weights are the MoTE model's parameters, no copies.
    stored = sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    params = sum(p.numel() for p in model.parameters())
    assert 0.99 * params <= stored <= 1.01 * params  # (the unused BERT pooler is dropped)


def test_multitask_onnx_without_torch_matches_torch_mote_for_every_task_and_mixed(tiny_mote, exported, tmp_path):
    model, _ = tiny_mote
    texts = sample_texts(40)  # real sentences: 1 word to truncated
    rng = np.random.default_rng(0)
    mixed = [TASKS[i] for i in rng.integers(0, len(TASKS), len(texts))]
    (tmp_path / "in.json").write_text(json.dumps({"texts": texts, "mixed": mixed}))
    code = NO_TORCH + f"""
import json, numpy as np
from mote.onnx.runtime import MultiTaskOnnxEncoder
spec = json.load(open({str(tmp_path / "in.json")!r}))
enc = MultiTaskOnnxEncoder({str(exported)!r})
out = {{}}
for bs in (1, 3, 17, 64):
    for task in {TASKS!r}:
        out[f"{{task}}-{{bs}}"] = enc.encode(spec["texts"], task=task, batch_size=bs)
    out[f"mixed-{{bs}}"] = enc.encode(spec["texts"], task=spec["mixed"], batch_size=bs)
    ids = [enc.tasks.index(t) for t in spec["mixed"]]
    out[f"mixed-ids-{{bs}}"] = enc.encode(spec["texts"], task=ids, batch_size=bs)
np.savez({str(tmp_path / "out.npz")!r}, **out)
assert "torch" not in sys.modules and "transformers" not in sys.modules, "torch was imported"
print("NO-TORCH-OK")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=src_env())
    assert proc.returncode == 0 and "NO-TORCH-OK" in proc.stdout, proc.stderr[-3000:]
    reference = {t: mote.encode(model, texts, task=t) for t in TASKS}
    mixed_ref = mote.encode(model, texts, task=mixed)  # torch's own mixed-batch path
    np.testing.assert_allclose(mixed_ref, np.stack([reference[t][i] for i, t in enumerate(mixed)]), atol=1e-5)
    with np.load(tmp_path / "out.npz") as z:
        for key in z.files:
            head = key.split("-")[0]
            assert_exact(z[key], mixed_ref if head == "mixed" else reference[head], key)
    assert min(cosines(reference["query"], reference[t]).mean() for t in TASKS[1:]) < 0.999  # tasks really differ


def test_multitask_encoder_bad_input(exported):
    enc = MultiTaskOnnxEncoder(exported)
    with pytest.raises(UnknownTaskIdError, match=r"Unknown task id 4: the graph serves ids 0\.\.3"):
        enc.encode(["a"], task=4)
    with pytest.raises(UnknownTaskIdError, match="Unknown task 'nope'.*classification"):
        enc.encode(["a", "b"], task=["query", "nope"])
    with pytest.raises(UnknownTaskIdError):
        enc.encode(["a"], task=-1)
    with pytest.raises(ValueError, match="2 tasks for 1 texts"):
        enc.encode(["a"], task=["query", "document"])
    with pytest.raises(TypeError, match="item 1"):
        enc.encode(["a", 3])
    with pytest.raises(ValueError, match="Cannot truncate to 999"):
        MultiTaskOnnxEncoder(exported, truncate_dim=999)
    assert enc.encode([], task="query").shape == (0, 32)
    assert enc.encode("one text").shape == (1, 32)  # default task
    with pytest.raises(FileNotFoundError, match="--all-tasks"):
        MultiTaskOnnxEncoder(exported.parent)


def test_refusals(tiny_mote, tmp_path, monkeypatch):
    model, tmp = tiny_mote
    tlr = to_token_routing(mote.load(str(tmp / "mote")))
    with pytest.raises(ValueError, match="routes tokens with learned routers"):
        export_multitask(tlr, tmp_path / "tlr")
    with pytest.raises(ValueError, match="token-routed MoTE model .TLR.: learned routers"):
        export_dense(tlr, "query", tmp_path / "tlr-dense")
    assert not (tmp_path / "tlr").exists() and not (tmp_path / "tlr-dense").exists()
    assert cli_main(["export", str(tmp / "mote"), str(tmp_path / "x"), "--all-tasks"]) == 2  # needs --onnx
    assert cli_main(["export", str(tmp / "mote"), str(tmp_path / "x")]) == 2  # neither --task nor --all-tasks

    import mote.onnx.multitask as mt

    original = mt.graph_module

    def wrong_graph(m):  # every row through expert 0: right for task 0 only
        graph = original(m)
        graph.expert_of_task.zero_()
        return graph

    monkeypatch.setattr(mt, "graph_module", wrong_graph)
    with pytest.raises(OnnxVerificationError, match="min cosine"):
        export_multitask(model, tmp_path / "wrong")
    assert not (tmp_path / "wrong").exists()
