"""The real all-MiniLM-L6-v2 (offline weights): exact conversion, routing, save/load, dense export."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SENTENCES, run_in_threads
from sentence_transformers import SentenceTransformer
from test_experts import perturb_expert

import mote
from mote.atomic import atomic_dir
from mote.export import export_dense


@pytest.fixture(scope="module")
def trained_like(minilm):
    """A MoTE MiniLM whose four experts differ (as after training), so routing mistakes are visible."""
    model = mote.convert(minilm, placement="every-other")
    for e in range(4):
        perturb_expert(model, e, scale=0.02)
    return model


@pytest.mark.parametrize("placement", ["every", "every-other"])
def test_fresh_conversion_is_exact_for_every_task(minilm, placement):
    model = mote.convert(mote.DEFAULT_BASE_MODEL, placement=placement)
    for task, prefix in mote.DEFAULT_TASKS.items():
        ours = model.encode(SENTENCES, task=task)
        ref = minilm.encode([prefix + s for s in SENTENCES])
        assert np.abs(ours - ref).max() <= 1e-5


def test_every_entry_point_routes_to_the_right_expert(trained_like, tmp_path):
    m = trained_like
    by_task = {t: m.encode(SENTENCES, task=t) for t in mote.DEFAULT_TASKS}
    # the perturbed experts really differ
    assert np.abs(by_task["query"] - by_task["document"]).max() > 1e-3
    np.testing.assert_allclose(m.encode_query(SENTENCES), by_task["query"], atol=1e-6)
    np.testing.assert_allclose(m.encode_document(SENTENCES), by_task["document"], atol=1e-6)
    for t in mote.DEFAULT_TASKS:
        np.testing.assert_allclose(m.encode(SENTENCES, prompt_name=t), by_task[t], atol=1e-6)
    np.testing.assert_allclose(m.encode(SENTENCES), by_task["document"], atol=1e-6)  # documented default

    # save -> load with plain SentenceTransformer(path)
    path = tmp_path / "mote-minilm"
    m.save(str(path))
    loaded = SentenceTransformer(str(path), device="cpu")
    assert type(loaded[0]).__name__ == "MoTETransformer"
    for t in mote.DEFAULT_TASKS:
        np.testing.assert_allclose(loaded.encode(SENTENCES, task=t), by_task[t], atol=1e-6)
    np.testing.assert_allclose(loaded.encode_query(SENTENCES), by_task["query"], atol=1e-6)
    cfg = json.loads((path / "mote_config.json").read_text())
    assert cfg["expert_layers"] == [1, 3, 5] and cfg["num_experts"] == 4


def test_dense_export_reproduces_task_in_a_process_without_mote(trained_like, tmp_path):
    expected = {}
    for task in ("query", "classification"):
        export_dense(trained_like, task, tmp_path / task)
        expected[task] = trained_like.encode(SENTENCES, task=task)
        np.save(tmp_path / f"{task}.npy", expected[task])
    code = f"""
import sys, numpy as np
from sentence_transformers import SentenceTransformer
for task in ("query", "classification"):
    m = SentenceTransformer({str(tmp_path)!r} + "/" + task, device="cpu")
    assert type(m[0]).__module__.startswith("sentence_transformers"), type(m[0])
    e = m.encode({SENTENCES!r})
    print(task, float(np.abs(e - np.load({str(tmp_path)!r} + "/" + task + ".npy")).max()))
print("mote imported:", "mote" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "mote imported: False"
    for line in lines[:-1]:
        task, diff = line.split()
        assert float(diff) <= 1e-5, line
    # the two exports really are different models
    assert np.abs(expected["query"] - expected["classification"]).max() > 1e-3


def test_bad_inputs(trained_like, minilm, tmp_path):
    m = trained_like
    with pytest.raises(mote.UnknownTaskError) as e:
        m.encode(["x"], task="retrieval")
    assert "'search_query: '" in str(e.value) and "'clustering'" in str(e.value)
    with pytest.raises(mote.UnknownTaskError):
        mote.encode(m, ["x"], task="retrieval")

    empty = mote.encode(m, [], task="query")
    assert empty.shape == (0, 384) and empty.dtype == np.float32

    with pytest.raises(TypeError, match="item 1 is a int"):
        mote.encode(m, ["ok", 3], task="query")
    with pytest.raises(TypeError, match="item 0"):
        m.encode([None], task="query")

    # truncation: max_seq_length tokens, prefix and special tokens included, cut at the end
    long_text = " ".join(["word"] * 2000)
    feats = mote.mote_module(m).preprocess([long_text, "short"], task="query")
    assert feats["input_ids"].shape[1] == 256
    fresh = mote.convert(minilm)
    np.testing.assert_allclose(
        fresh.encode([long_text], task="query"), minilm.encode(["search_query: " + long_text]), atol=1e-5
    )

    # not a MoTE model
    with pytest.raises(mote.NotAMoTEModelError, match="mote convert"):
        mote.load(mote.DEFAULT_BASE_MODEL)
    with pytest.raises(mote.NotAMoTEModelError, match="modules.json"):
        mote.load(tmp_path)


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "partial.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    with pytest.raises(FileExistsError, match="overwrite"), atomic_dir(target):
        pass


def test_mixed_batch_on_real_model(trained_like):
    tasks = ["query", "document", "classification", "clustering", "query", "clustering"]
    mixed = mote.encode(trained_like, SENTENCES, task=tasks)
    sep = np.stack([trained_like.encode([s], task=t)[0] for s, t in zip(SENTENCES, tasks)])
    assert np.abs(mixed - sep).max() <= 1e-5
    assert min(np.abs(sep[i] - sep[j]).max() for i, j in ((0, 1), (3, 5))) > 1e-3  # tasks really differ


def test_convert_does_not_modify_the_callers_model(minilm):
    before = minilm.encode(SENTENCES)
    model = mote.convert(minilm, placement="every")
    perturb_expert(model, 0)
    assert type(minilm[0]).__name__ == "Transformer"
    np.testing.assert_array_equal(minilm.encode(SENTENCES), before)


def test_concurrent_encodes_of_different_tasks_each_get_their_own_experts(trained_like):
    """Four threads share one model (a web server does this), each encoding its own task: every thread gets
    exactly its single-threaded embeddings (the routing of a forward is local to it)."""
    texts = (SENTENCES * 4)[:24]  # 3 batches of 8 per call
    tasks = list(mote.DEFAULT_TASKS)
    expected = {t: trained_like.encode(texts, task=t, batch_size=8) for t in tasks}
    assert min(np.abs(expected[a] - expected[b]).max() for a in tasks for b in tasks if a != b) > 1e-3
    got = run_in_threads({t: (lambda t=t: trained_like.encode(texts, task=t, batch_size=8)) for t in tasks})
    for t in tasks:
        for emb in got[t]:
            assert np.abs(emb - expected[t]).max() <= 1e-6, t


def test_threaded_sentence_transformer_encode_carries_a_task_per_text(trained_like):
    """Issue 27.1: ``SentenceTransformer.encode(texts, task=[one per text])`` sorts the texts by length; each text
    keeps its own task (exactly mote.encode's embeddings), with texts of very different lengths and more texts than
    the batch size, in threads sharing the model, through encode and encode_query alike."""
    texts = [("magnets attract iron because of aligned domains " * (i % 7)) + f"text {i}" for i in range(40)]
    tasks = [list(mote.DEFAULT_TASKS)[(i * 3) % 4] for i in range(40)]
    expected = mote.encode(trained_like, texts, task=tasks, batch_size=8)
    one_each = np.stack([trained_like.encode([x], task=t)[0] for x, t in zip(texts[:8], tasks[:8])])
    assert np.abs(expected[:8] - one_each).max() <= 1e-5
    reversed_tasks = tasks[::-1]
    expected_rev = mote.encode(trained_like, texts, task=reversed_tasks, batch_size=8)
    assert np.abs(expected - expected_rev).max() > 1e-3  # the tasks really matter
    jobs = {
        "a": lambda: trained_like.encode(texts, task=tasks, batch_size=8),
        "b": lambda: trained_like.encode(texts, task=reversed_tasks, batch_size=8),
        "c": lambda: trained_like.encode(texts, task=tasks, batch_size=32, convert_to_tensor=True).numpy(),
        "d": lambda: trained_like.encode_query(texts, batch_size=8),
    }
    got = run_in_threads(jobs, repeats=2)
    query = mote.encode(trained_like, texts, task="query", batch_size=8)
    for name, want in (("a", expected), ("b", expected_rev), ("c", expected), ("d", query)):
        for emb in got[name]:
            assert np.abs(emb - want).max() <= 1e-6, name
