"""ONNX export (mote.onnx): exact vs torch on real sentences of many lengths and batch shapes; int8 with quality."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Normalize, Transformer
from sentence_transformers.sentence_transformer.modules import Pooling
from transformers import AutoTokenizer, BertConfig, BertModel

import mote
import mote.onnx as mo
import mote.onnx.dense as dense_mod
from mote.data import data_dir
from mote.export import export_dense
from mote.files import open_text
from mote.onnx import OnnxEncoder, OnnxVerificationError, export_onnx

TINY_MAX_LEN = 48
BATCH_SIZES = (1, 3, 17, 64)
# Prepended to subprocess code: torch, transformers and sentence-transformers raise ImportError (as if not installed).
NO_TORCH = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sentence_transformers"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, _Blocked())
"""


def src_env(extra_path: str | None = None) -> dict[str, str]:
    """The environment of a subprocess that imports this checkout's mote (and ``extra_path`` first, if given)."""
    import os

    env = dict(os.environ)
    paths = [p for p in (extra_path, str(Path(mote.__file__).parents[1]), env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def sample_texts(n: int = 45) -> list[str]:
    """Real STSBenchmark sentences (not the export's own verification picks), plus edge and over-long texts."""
    with open_text(data_dir() / "STSBenchmark" / "test.jsonl.gz") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    sentences = sorted({r["sentence2"] for r in rows}, key=len)
    picked = [sentences[i] for i in np.random.default_rng(7).choice(len(sentences), n, replace=False)]
    long = " ".join(sentences[-40:])  # several hundred tokens: truncated at max_seq_length
    return [*picked, "", "x", sentences[-1], long, " ".join(sentences[-8:])]


def assert_exact(onnx_emb: np.ndarray, torch_emb: np.ndarray, what: str) -> None:
    assert onnx_emb.shape == torch_emb.shape, what
    cos = cosines(onnx_emb, torch_emb)
    assert cos.min() >= 0.9999, f"{what}: min cosine {cos.min():.6f}"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny_dense(tmp_path_factory) -> str:
    """A tiny random BERT as a dense sentence-transformers folder (two prompts, default 'query')."""
    tmp = tmp_path_factory.mktemp("onnx-tiny")
    tokenizer = AutoTokenizer.from_pretrained(mote.resolve_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        initializer_range=0.3,  # peaky attention: a padding/mask mistake would show clearly
    )
    hf = BertModel(config)
    raw = tmp / "hf"
    hf.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    st = SentenceTransformer(
        modules=[Transformer(str(raw), max_seq_length=TINY_MAX_LEN), Pooling(32, "mean"), Normalize()],
        prompts={"query": "query: ", "document": "passage: "},
        default_prompt_name="query",
        device="cpu",
    )
    out = tmp / "dense"
    st.save(str(out))
    return str(out)


@pytest.fixture(scope="module")
def tiny_report(tiny_dense):
    return export_onnx(tiny_dense, quantize=True, max_sts_pairs=200)


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory):
    """The real MiniLM, converted to MoTE, task 'query' exported dense, then to ONNX (fp32 only)."""
    tmp = tmp_path_factory.mktemp("onnx-minilm")
    model = mote.convert("all-MiniLM-L6-v2")
    dense = export_dense(model, "query", tmp / "minilm-query")
    report = export_onnx(dense)
    return model, str(dense), report


# ------------------------------------------------------------------------------------------------ tiny BERT
def test_tiny_export_is_verified_dynamic_and_reports_int8(tiny_dense, tiny_report):
    r = tiny_report
    assert r.min_cosine >= 0.9999 and r.texts_source == "STSBenchmark"
    assert r.batch_sizes == BATCH_SIZES and r.truncated >= 1 and r.token_lengths[1] == TINY_MAX_LEN
    folder = Path(tiny_dense) / "onnx"
    assert (folder / "model.onnx").is_file() and (folder / "model_qint8_avx512.onnx").is_file()
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["sentence_embedding", "last_hidden_state"]
    for inp in graph.input:  # batch and sequence are symbolic, not the export example's shape
        dims = inp.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims), inp
    q = r.int8
    assert q is not None and q.sts_pairs == 200
    assert all(math.isfinite(x) for x in (q.min_cosine, q.mean_cosine, q.spearman_fp32, q.spearman_int8))
    assert q.min_cosine <= q.mean_cosine <= 1.0 + 1e-6
    text = str(r)
    assert "int8" in text and "Spearman" in text and f"{q.spearman_change:+.4f}" in text
    meta = json.loads((folder / "mote_onnx.json").read_text())
    assert meta["int8"]["spearman_change"] == pytest.approx(q.spearman_change)
    assert meta["verification"]["min_cosine"] == pytest.approx(r.min_cosine)


def test_tiny_onnx_matches_torch_across_batch_shapes_and_lengths(tiny_dense, tiny_report):
    st = SentenceTransformer(tiny_dense, device="cpu")
    texts = sample_texts()
    reference = st.encode(texts, batch_size=7)
    enc = OnnxEncoder(tiny_dense)
    for b in BATCH_SIZES:
        assert_exact(enc.encode(texts, batch_size=b), reference, f"encode batch_size={b}")
    # Ragged batches straight into the session (encode() sorts by length): padding must not matter.
    rng = np.random.default_rng(3)
    for b in (3, 17):
        idx = rng.choice(len(texts), b, replace=False)
        assert_exact(enc.embed_batch([enc.prompt + texts[i] for i in idx]), reference[idx], f"ragged {b}")


def test_onnx_encoder_prepends_the_default_prompt(tiny_dense, tiny_report):
    st = SentenceTransformer(tiny_dense, device="cpu")
    enc = OnnxEncoder(tiny_dense)
    texts = ["how do magnets work", "A man is playing a guitar."]
    assert enc.prompt == "query: " and enc.max_seq_length == TINY_MAX_LEN
    default = enc.encode(texts)
    np.testing.assert_allclose(default, enc.encode(["query: " + t for t in texts], prompt=""), atol=1e-6)
    assert np.abs(default - enc.encode(texts, prompt="")).max() > 1e-3  # the prefix changes the embedding
    doc = enc.encode(texts, prompt_name="document")
    assert_exact(doc, st.encode(texts, prompt_name="document"), "prompt_name=document")
    assert_exact(enc.encode(texts, prompt=""), st.encode(texts, prompt=""), "no prompt")
    with pytest.raises(ValueError, match="nope"):
        enc.encode(texts, prompt_name="nope")


def test_int8_encoder_loads_with_its_measured_quality(tiny_dense, tiny_report, caplog):
    with caplog.at_level(logging.WARNING, logger="mote.onnx"):
        enc8 = OnnxEncoder(tiny_dense, quantized=True)
    assert "int8" in caplog.text and f"{tiny_report.int8.spearman_change:+.4f}" in caplog.text
    texts = sample_texts(12)
    out8, out32 = enc8.encode(texts), OnnxEncoder(tiny_dense).encode(texts)
    cos = cosines(out8, out32)
    assert out8.shape == out32.shape and np.isfinite(out8).all()
    assert cos.min() < 0.99999  # really quantised, not a copy of the fp32 model
    assert cos.min() >= tiny_report.int8.min_cosine - 0.05


def test_export_refuses_a_graph_that_ignores_padding(tiny_dense, tiny_report, tmp_path, monkeypatch):
    """A wrong graph that is right at batch size 1 (no padding) must be caught, and no ONNX folder left."""
    dense = tmp_path / "dense"
    shutil.copytree(tiny_dense, dense, ignore=shutil.ignore_patterns("onnx"))
    (dense / "onnx").mkdir()
    (dense / "onnx" / "model.onnx").write_bytes(b"stale")
    original = dense_mod.embedder

    def ignores_mask(st):
        inner = original(st)

        class IgnoresMask(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                return self.inner(input_ids, torch.ones_like(attention_mask), token_type_ids)

        return IgnoresMask().eval()

    monkeypatch.setattr(dense_mod, "embedder", ignores_mask)
    with pytest.raises(OnnxVerificationError, match="min cosine"):
        export_onnx(dense)
    assert not (dense / "onnx").exists()


def test_onnx_encoder_needs_neither_torch_nor_transformers(tiny_dense, tiny_report):
    """The dense encoder in a process where torch, transformers and sentence-transformers cannot be imported."""
    code = NO_TORCH + f"""
import numpy as np
from mote.onnx import OnnxEncoder
np.save(sys.argv[1], OnnxEncoder({tiny_dense!r}).encode(["how do magnets work", "hi"]))
assert "torch" not in sys.modules and "transformers" not in sys.modules, sorted(sys.modules)
"""
    out = Path(tiny_dense).parent / "no-torch.npy"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, timeout=120, env=src_env())
    np.testing.assert_allclose(np.load(out), OnnxEncoder(tiny_dense).encode(["how do magnets work", "hi"]), atol=1e-6)


# ------------------------------------------------------------------------------------------------ ST's ONNX backend
# Runs with no mote importable: what a user of sentence-transformers' ONNX backend does with the export folder.
NO_MOTE = """
import importlib.abc, json, os, sys
from pathlib import Path
class _NoMote(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "mote":
            raise ModuleNotFoundError("mote is blocked: this process must not need it", name=name)
sys.meta_path.insert(0, _NoMote())
import numpy as np
from sentence_transformers.backend.utils import backend_should_export
folder, texts_file, out = sys.argv[1:4]
texts = json.loads(Path(texts_file).read_text())
INT8 = "onnx/model_qint8_avx512.onnx"
export, kwargs = backend_should_export(Path(folder), True, {}, "model.onnx", "*.onnx", "ONNX")
assert not export and (kwargs["subfolder"], kwargs["file_name"]) == ("onnx", "model.onnx"), (export, kwargs)
export, kwargs = backend_should_export(Path(folder), True, {"file_name": INT8}, "model.onnx", "*.onnx", "ONNX")
assert not export and (kwargs["subfolder"], kwargs["file_name"]) == ("onnx", "model_qint8_avx512.onnx"), kwargs
try:
    import optimum.onnxruntime  # noqa: F401
except ImportError as e:
    print("NO-OPTIMUM", e)
    sys.exit(0)
from sentence_transformers import SentenceTransformer
fp32 = SentenceTransformer(folder, backend="onnx", device="cpu").encode(texts)
int8 = SentenceTransformer(folder, backend="onnx", device="cpu", model_kwargs={"file_name": INT8}).encode(texts)
assert "mote" not in sys.modules
np.savez(out, fp32=fp32, int8=int8)
print("BACKEND-OK")
"""


def run_without_mote(folder: str, texts: list[str], tmp_path: Path) -> tuple[str, Path]:
    """Run NO_MOTE on ``folder``; ``MOTE_ST_ONNX_PYTHONPATH`` puts packages first (e.g. an optimum-onnx overlay)."""
    import os

    texts_file, out = tmp_path / "texts.json", tmp_path / "st-onnx.npz"
    texts_file.write_text(json.dumps(texts))
    env = dict(os.environ)
    extra = os.environ.get("MOTE_ST_ONNX_PYTHONPATH")
    env["PYTHONPATH"] = extra or ""
    proc = subprocess.run(
        [sys.executable, "-c", NO_MOTE, folder, str(texts_file), str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out


@pytest.fixture(scope="module")
def without_mote(tiny_dense, tiny_report, tmp_path_factory):
    """``(texts, stdout, npz path)`` of one NO_MOTE run on the tiny export, shared by the two tests below: its
    backend_should_export checks come first and hold for any texts; the encode (with optimum-onnx) is of ``texts``."""
    texts = sample_texts(20)
    return (texts, *run_without_mote(tiny_dense, texts, tmp_path_factory.mktemp("st-onnx")))


def test_dense_export_has_the_layout_sentence_transformers_onnx_backend_loads(tiny_dense, without_mote):
    """sentence-transformers' own backend_should_export finds onnx/model.onnx and the int8 file, with no mote."""
    _, stdout, _ = without_mote
    assert "NO-OPTIMUM" in stdout or "BACKEND-OK" in stdout, stdout
    graph = onnx.load(str(Path(tiny_dense) / "onnx" / "model_qint8_avx512.onnx")).graph
    assert "last_hidden_state" in [o.name for o in graph.output]  # the output the backend reads


def test_sentence_transformer_onnx_backend_without_mote_reproduces_the_torch_export(tiny_dense, tiny_report,
                                                                                     without_mote):
    """``SentenceTransformer(export, backend="onnx")``, in a process without mote, == the torch export.

    Needs optimum-onnx in that process. optimum-onnx 0.1 pins transformers < 4.58 and so cannot be installed next to
    sentence-transformers 6 (transformers 5; huggingface/optimum-onnx#114); docs/onnx.md shows how to run this test
    against an overlay with sentence-transformers 5.7 + transformers 4.57 + optimum-onnx (MOTE_ST_ONNX_PYTHONPATH).
    """
    texts, stdout, out = without_mote
    if "NO-OPTIMUM" in stdout:
        pytest.skip("optimum-onnx is not importable next to transformers 5 (huggingface/optimum-onnx#114); set "
                    "MOTE_ST_ONNX_PYTHONPATH to an overlay that has it (docs/onnx.md)")
    reference = SentenceTransformer(tiny_dense, device="cpu").encode(texts)
    with np.load(out) as z:
        assert_exact(z["fp32"], reference, "SentenceTransformer(backend='onnx')")
        assert cosines(z["int8"], reference).min() >= tiny_report.int8.min_cosine - 0.05
        assert cosines(z["int8"], z["fp32"]).min() < 0.99999  # the quantised file, not the fp32 one


def test_verification_texts_span_all_lengths_with_or_without_the_dataset(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(mote.resolve_model_path("all-MiniLM-L6-v2"))
    for data, source in ((None, "STSBenchmark"), (tmp_path, "built-in")):
        texts, src = mo.verification_texts(tokenizer, 128, data, prompt="search_query: ")
        lengths = [len(ids) for ids in tokenizer(["search_query: " + t for t in texts], verbose=False)["input_ids"]]
        assert src == source and "" in texts and len(set(texts)) == len(texts)
        assert min(lengths) == 6 and lengths[-4:-1] == [127, 128, 129] and lengths[-1] > 3 * 128, lengths[-5:]


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_inputs(tiny_dense, tiny_report, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        export_onnx(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a sentence-transformers"):
        export_onnx(tmp_path / "empty")
    fake = tmp_path / "mote-model"
    fake.mkdir()
    (fake / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "mote.model.X"}]))
    with pytest.raises(ValueError, match="export_dense"):
        export_onnx(fake)
    no_onnx = tmp_path / "no-onnx"
    shutil.copytree(tiny_dense, no_onnx, ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxEncoder(no_onnx)
    with pytest.raises(FileNotFoundError, match="STSBenchmark"):  # int8 is never written unmeasured
        export_onnx(no_onnx, quantize=True, data=tmp_path / "empty")
    assert not (no_onnx / "onnx").exists()

    enc = OnnxEncoder(tiny_dense)
    assert enc.encode([]).shape == (0, 32) and enc.encode("one text").shape == (1, 32)
    with pytest.raises(TypeError, match="item 1"):
        enc.encode(["ok", 3])
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(["ok"], batch_size=0)

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install mote\[onnx\]"):
        OnnxEncoder(tiny_dense)
    with pytest.raises(ImportError, match=r"pip install mote\[onnx\]"):
        export_onnx(tiny_dense)


# ------------------------------------------------------------------------------------------------ real MiniLM
@pytest.mark.slow
def test_minilm_mote_task_onnx_matches_torch(minilm_export):
    model, dense, report = minilm_export
    assert report.min_cosine >= 0.9999 and report.int8 is None and report.token_lengths[1] == 256
    st = SentenceTransformer(dense, device="cpu")
    enc = OnnxEncoder(dense)
    assert enc.prompt == "search_query: "
    # All lengths (1 word to truncated) at small batch shapes; big batch shapes on sentences (cheap on 2 cores).
    texts = sample_texts(20)
    reference = st.encode(texts, batch_size=16)
    for b in (1, 3):
        assert_exact(enc.encode(texts, batch_size=b), reference, f"MiniLM batch_size={b}")
    sentences = sample_texts(70)[:70]
    reference = st.encode(sentences, batch_size=16)
    for b in (17, 64):
        assert_exact(enc.encode(sentences, batch_size=b), reference, f"MiniLM batch_size={b}")
    # ... and it serves what the MoTE model itself gives for the task.
    few = texts[:12] + texts[-2:]
    assert_exact(enc.encode(few), mote.encode(model, few, task="query"), "MoTE task 'query'")
    with pytest.raises(FileNotFoundError, match="quantize"):
        OnnxEncoder(dense, quantized=True)


@pytest.mark.slow
def test_minilm_token_embeddings_output(minilm_export):
    """The second output is the encoder's last hidden state (what sentence-transformers' ONNX backend reads)."""
    _, dense, _ = minilm_export
    st = SentenceTransformer(dense, device="cpu")
    enc = OnnxEncoder(dense)
    feeds = enc.tokenize(["hi", "a somewhat longer sentence about magnets"])
    _, tokens = enc.session.run(["sentence_embedding", "last_hidden_state"], feeds)
    with torch.no_grad():
        ref = st[0].auto_model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    mask = feeds["attention_mask"].astype(bool)
    np.testing.assert_allclose(tokens[mask], ref[mask], atol=2e-4)
