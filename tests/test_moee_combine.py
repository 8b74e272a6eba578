"""MoEE templates, fitted standardisation, the sum similarity, alpha, prediction combination, encoder, CLI."""

import json

import numpy as np
import pytest
import torch
from tiny_moe import tiny_moe, tiny_tokenizer

from mote.cli import main
from mote.moee import (
    MoEEConfig,
    MoEEEmbedder,
    Standardizer,
    combine_predictions,
    encoder_for_eval,
    select_alpha,
    stats_dirname,
)
from mote.moee.combine import RunningMoments, cosine_rows
from mote.moee.templates import PAPER_PROMPTS, TEMPLATES, render

TEXTS = [
    "the cat sat on the mat and the dog sat on the rug , he said hi to the big red bird",
    "dog",
    'she said "hello" , is this a sentence ?',
    "a small green car ran quickly over the road",
    "hi",
    "the blue house is not big",
    "he ran slowly under the tree",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_moe("olmoe")


# ------------------------------------------------------------------------------------------------ templates
def test_templates_are_the_reference_codes():
    assert render("a cat", "prompteol") == 'This sentence : "a cat" means in one word:"'
    assert render("a cat", "quoted") == '"a cat"'
    assert render("a cat", "none") == "a cat"
    assert len(PAPER_PROMPTS) == 9 and all(p in TEMPLATES for p in PAPER_PROMPTS)
    assert all("{text}" in t for t in TEMPLATES.values())
    assert render("x", "Query: {text}!") == "Query: x!"


def test_reference_preprocessing():
    assert render("He said hi", "prompteol", preprocess=True) == 'This sentence : "He said hi." means in one word:"'
    # a text ending in a quote gets no period (the reference checks the last character before replacing quotes)
    assert render('He said "hi"', "quoted", preprocess=True) == "\"He said 'hi'\""
    assert render("Really?", "quoted", preprocess=True) == '"Really?"'  # ends in ?: no period added
    assert render("snake_case", "none", preprocess=True) == "snake case."  # every _ becomes a space
    assert render("  padded", "none", preprocess=True) == "padded."  # the prompt is stripped
    assert render("", "quoted", preprocess=True) == '"."'
    assert render("x", "none", instruction="Represent: ") == "Represent: x"
    with pytest.raises(ValueError, match="Empty text"):
        render(" ", "none", empty_text="error")


# ------------------------------------------------------------------------------------------------ standardisation
def test_running_moments_match_numpy_whatever_the_batching():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(101, 5))
    for sizes in ([101], [1] * 101, [7, 50, 44], [2, 99]):
        m, start = RunningMoments(), 0
        for s in sizes:
            m.update(x[start : start + s])
            start += s
        np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(m.std(), x.std(0, ddof=1), rtol=1e-12)


def test_concat_stats_roundtrip_and_do_not_depend_on_batching(tmp_path, model, tok):
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol"))
    stats = emb.fit_stats(TEXTS, batch_size=len(TEXTS))
    other = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol")).fit_stats(TEXTS[::-1], batch_size=2)
    np.testing.assert_allclose(other.mean, stats.mean, atol=1e-6)
    np.testing.assert_allclose(other.std, stats.std, atol=1e-6)
    raw = emb.features(TEXTS).joined().astype(np.float64)
    np.testing.assert_allclose(stats.mean, raw.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats.std, raw.std(0, ddof=1), atol=1e-6)

    path = stats.save(tmp_path / stats_dirname(emb.config))
    loaded = Standardizer.load(path)
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
    assert (loaded.hs_dim, loaded.count, loaded.config) == (32, len(TEXTS), emb.config.to_dict())
    assert loaded.digest() == stats.digest()
    with pytest.raises(FileExistsError):
        stats.save(path)

    fresh = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol"), stats=path)
    concat = fresh.encode(TEXTS, view="concat")
    np.testing.assert_allclose(concat, (raw - stats.mean) / (stats.std + 1e-8), atol=1e-4)
    for i, text in enumerate(TEXTS):  # a standardised embedding does not depend on its batch either
        np.testing.assert_allclose(fresh.encode([text], view="concat")[0], concat[i], atol=1e-4)
    assert fresh.encode(TEXTS[:2], view="hs").shape == (2, 32)  # hs: never standardised unless asked
    np.testing.assert_allclose(fresh.encode(TEXTS[:2], view="hs"), raw[:2, :32], atol=1e-6)

    # statistics are tied to the features' settings
    with pytest.raises(ValueError, match="template"):
        MoEEEmbedder(model, tok, MoEEConfig(template="none"), stats=path)
    with pytest.raises(ValueError, match="fit-stats"):
        MoEEEmbedder(model, tok, MoEEConfig(template="prompteol")).encode(TEXTS, view="concat")
    doc = json.loads((path / "moee_stats.json").read_text())
    assert doc["config"]["template"] == "prompteol" and doc["rw_dim"] == 24


def test_constant_feature_is_only_centred():
    st = Standardizer(np.array([1.0, 5.0]), np.array([2.0, 0.0]), hs_dim=1, config={})
    np.testing.assert_allclose(st.transform(np.array([[3.0, 6.0]])), [[1.0, 1.0]], atol=1e-6)


# ------------------------------------------------------------------------------------------------ sum, alpha
def test_sum_encoder_scores_views_and_identity(model, tok):
    emb = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol"))
    enc = encoder_for_eval(emb, "sum", alpha=0.5)
    x = enc.encode(TEXTS, task="document")
    f = emb.features(TEXTS)
    np.testing.assert_allclose(x, f.joined(), atol=1e-6)
    a, b = x[:3], x[3:6]
    expected = cosine_rows(f.hs[:3], f.hs[3:6]) + 0.5 * cosine_rows(f.rw[:3], f.rw[3:6])
    np.testing.assert_allclose(enc.pair_scores(a, b), expected, atol=1e-6)
    mat = enc.score_matrix(a, b)
    assert mat.shape == (3, 3)
    np.testing.assert_allclose(np.diag(mat), expected, atol=1e-6)
    (n1, v1, w1), (n2, v2, w2) = enc.views(x)
    assert (n1, w1, n2, w2) == ("hs", 1.0, "rw", 0.5)
    np.testing.assert_allclose(v1, f.hs, atol=1e-6)
    np.testing.assert_allclose(v2, f.rw, atol=1e-6)
    assert enc.task_key("query") == enc.task_key("document")  # a Hugging Face LM ignores the task

    hs_enc = encoder_for_eval(emb, "hs")
    assert not any(hasattr(hs_enc, h) for h in ("pair_scores", "score_matrix", "views", "combine_predictions"))
    assert hs_enc.encode(TEXTS[:2], task="query").dtype == np.float32
    # identity: stable, and different for another view / template / weights
    again = encoder_for_eval(MoEEEmbedder(model, tok, MoEEConfig(template="prompteol")), "sum", alpha=2.0)
    assert again.identity == enc.identity  # alpha does not change the embeddings
    assert hs_enc.identity != enc.identity
    assert encoder_for_eval(MoEEEmbedder(model, tok, MoEEConfig(template="none")), "sum").identity != enc.identity
    assert encoder_for_eval(MoEEEmbedder(tiny_moe("olmoe", seed=1), tok), "sum").identity != enc.identity


def test_auto_alpha_is_label_free_deterministic_and_recorded(model, tok):
    enc = encoder_for_eval(model, "sum", alpha="auto", template="prompteol", tokenizer=tok)
    x = enc.encode(TEXTS, task="query")
    s1 = enc.pair_scores(x[:-1], x[1:])
    s2 = enc.pair_scores(x[:-1], x[1:])
    np.testing.assert_array_equal(s1, s2)
    assert len(enc.alphas) == 2 and enc.alphas[0] == enc.alphas[1] > 0
    enc.score_matrix(x, x)
    assert enc.views(x)[1][2] == enc.alphas[-1]
    # one alpha per retrieval/reranking dataset: fitted on the whole query x document grid, then fixed per chunk
    fitted = enc.fit_scores(x[:4], x)
    whole = enc.score_matrix(x[:4], x)  # "auto" on the same grid picks the same alpha
    np.testing.assert_allclose(fitted.score_matrix(x[:4], x), whole, atol=1e-6)
    chunk = fitted.score_matrix(x[:1], x)
    k = enc.hs_dim
    expected = cosine_rows(np.repeat(x[:1, :k], len(x), 0), x[:, :k]) + fitted.alpha * cosine_rows(
        np.repeat(x[:1, k:], len(x), 0), x[:, k:]
    )
    np.testing.assert_allclose(chunk[0], expected, atol=1e-6)
    assert enc.alpha == "auto" and fitted.alpha == enc.alphas[-2]
    assert encoder_for_eval(model, "sum", alpha=0.5, tokenizer=tok).fit_scores(x, x).alpha == 0.5


def test_select_alpha_balances_scales():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=2000)
    hs, rw = signal + rng.normal(size=2000), signal + rng.normal(size=2000)
    assert select_alpha(hs, rw) == 1.0  # equally informative, equal spreads
    assert select_alpha(hs, 4.0 * rw) == 0.25  # alpha undoes a rescaled RW similarity
    assert select_alpha(4.0 * hs, rw) == 4.0
    with pytest.raises(ValueError):
        select_alpha(hs[:2], rw[:2])


def test_combine_predictions_as_the_reference_code():
    hs, rw = np.array([0, 2, 1, 3]), np.array([1, 2, 3, 3])
    # classification: (y_hs + a*y_rw) / (1 + a), truncated to int when fractional
    assert combine_predictions([hs, rw], [1.0, 1.0]).tolist() == [0, 2, 2, 3]
    assert combine_predictions([hs, rw], [1.0, 3.0]).tolist() == [0, 2, 2, 3]
    assert combine_predictions([hs, rw], [1.0, 0.0]).tolist() == hs.tolist()
    # string labels go through the sorted classes
    labels = np.array(["neg", "neu", "pos"])
    assert combine_predictions([labels[hs[:3] % 3], labels[rw[:3] % 3]], [1, 1]).tolist() == ["neg", "pos", "neg"]
    # clustering: each distinct combined value is one cluster
    a, b = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    ids = combine_predictions([a, b], [1.0, 1.0], kind="clustering")
    assert ids.tolist() == [0, 1, 1, 2]  # 0, .5, .5, 1: the fractional label is a cluster of its own
    assert combine_predictions([a, b], [1.0, 1.0]).tolist() == [0, 0, 0, 1]  # classification truncates
    with pytest.raises(ValueError):
        combine_predictions([hs], [1.0, 1.0])


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_fit_stats_encode_info(tmp_path, model, tok, capsys):
    folder = tmp_path / "tiny-olmoe"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    common = ["--template", "prompteol", "--dtype", "float32", "--device", "cpu"]
    assert main(["moee", "fit-stats", str(folder), "--corpus", str(corpus), *common]) == 0
    stats_dir = folder / stats_dirname(MoEEConfig(template="prompteol"))
    assert (stats_dir / "moee_stats.safetensors").is_file()

    out = tmp_path / "concat.npy"
    args = ["moee", "encode", str(folder), "--view", "concat", "--input", str(corpus), "--output", str(out), *common]
    assert main(args) == 0
    concat = np.load(out)
    ref = MoEEEmbedder(model, tok, MoEEConfig(template="prompteol"), stats=stats_dir).encode(TEXTS, view="concat")
    np.testing.assert_allclose(concat, ref, atol=1e-4)

    out16 = tmp_path / "hs16.npy"
    args16 = [
        "moee",
        "encode",
        str(folder),
        "--view",
        "hs",
        "--input",
        str(corpus),
        "--output",
        str(out16),
        "--dtype",
        "bfloat16",
        "--device",
        "cpu",
    ]
    assert main(args16) == 0
    assert np.load(out16).shape == (len(TEXTS), 32)

    assert main(["moee", "info", str(folder), *common]) == 0
    assert "RW dim 24" in capsys.readouterr().out
    assert main(["moee", "templates"]) == 0
    bad = ["moee", "encode", str(folder), "--input", str(corpus), "--output", str(out), "--template", "no slot"]
    assert main(bad) == 2
    assert "{text}" in capsys.readouterr().err


def test_loaded_backbone_equals_in_memory_model(tmp_path, model, tok):
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    loaded = MoEEEmbedder.from_pretrained(folder, MoEEConfig(template="quoted"), dtype="float32", device="cpu")
    assert type(loaded.backbone).__name__ == "OlmoeModel" and loaded.stats is None
    ref = MoEEEmbedder(model, tok, MoEEConfig(template="quoted")).features(TEXTS)
    got = loaded.features(TEXTS)
    np.testing.assert_allclose(got.hs, ref.hs, atol=1e-5)
    np.testing.assert_allclose(got.rw, ref.rw, atol=1e-5)
    assert torch.is_tensor(next(loaded.backbone.parameters()))
