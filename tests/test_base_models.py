"""Offline base weights: the MiniLM-L6 package and paraphrase-MiniLM-L3-v2 rebuilt from ONNX."""

import numpy as np
import onnxruntime as ort
import pytest
from sentence_transformers import SentenceTransformer

import mote
from mote.base_models import _l3_onnx_file, materialize_minilm_l3, offline_model_path, resolve_model_path


def test_minilm_alias_resolves_to_the_packaged_folder():
    path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert path == str(offline_model_path("all-MiniLM-L6-v2"))
    assert resolve_model_path("org/unknown-model") == "org/unknown-model"  # hub ids pass through


@pytest.mark.skipif(_l3_onnx_file() is None, reason="mote[minilm-l3] not installed")
def test_minilm_l3_from_onnx_matches_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTE_CACHE", str(tmp_path / "cache"))
    path = resolve_model_path("paraphrase-MiniLM-L3-v2")
    assert path.startswith(str(tmp_path))
    st = SentenceTransformer(path, device="cpu")
    texts = ["A man is playing a guitar.", "hi", "The quick brown fox jumps over the lazy dog by the river today."]
    feats = st.tokenizer(texts, padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(_l3_onnx_file()))
    outs = sess.run(None, {k: feats[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    pooled = next(o for o in outs if o.shape == (3, 384))
    np.testing.assert_allclose(st.encode(texts), pooled, atol=1e-5)
    # and it converts to MoTE exactly like any BERT
    model = mote.convert(path, placement="every")
    np.testing.assert_allclose(
        model.encode(texts, task="query"), st.encode(["search_query: " + t for t in texts]), atol=1e-5
    )
    with pytest.raises(FileNotFoundError, match="minilm-l3"):
        materialize_minilm_l3(tmp_path / "x", onnx_file=tmp_path / "missing.onnx")
