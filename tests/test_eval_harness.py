"""mote.eval plumbing: discovery, routing, dedup, cache, outputs, bad input, interruption, compare, similarity, CLI."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
from test_eval_support import FakeEncoder, make_data_dir, make_tiny_model, write_jsonl_gz

import mote
from mote.eval import (
    DatasetFormatError,
    EmbeddingCache,
    UnknownDatasetError,
    compare,
    embed_texts,
    evaluate,
    load_encoder,
    task_similarity,
)
from mote.eval.harness import resolve_routes


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("toydata"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _run(enc, root, out=None, **kw):
    kw.setdefault("cache", False)
    return evaluate(enc, data_dir=root, output=out, show_progress=False, quiet=True, **kw)


# ------------------------------------------------------------------------------------------------ evaluate
def test_new_folders_are_discovered_and_written_with_the_documented_shape(toy_root, tmp_path):
    out = tmp_path / "run"
    res = _run(FakeEncoder(), toy_root, out)
    assert set(res["datasets"]) == {
        "ToySTS",
        "ToyClassification",
        "ToyClustering",
        "ToyPairs",
        "ToyReranking",
        "ToyRetrieval",
    }
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["model"] == "fake" and on_disk["model_identity"] == "fake-v1"
    assert on_disk["data"]["dir"] == str(toy_root.resolve())
    assert on_disk["data"]["datasets"]["ToySTS"]["files"]["test.jsonl.gz"]  # per-file hashes
    for name, entry in on_disk["datasets"].items():
        assert {"task_type", "main_score", "metrics", "seconds", "main_metric"} <= set(entry)
        assert entry["main_score"] == pytest.approx(entry["metrics"][entry["main_metric"]])
        assert 0 <= entry["main_score"] <= 100  # percent
        assert (out / "items" / f"{name}.npz").is_file()
    assert "| ToySTS | STS |" in (out / "results.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp folders left behind


def test_quick_suite_takes_one_dataset_per_task_type(toy_root):
    from mote.eval import discover, select

    chosen = select(discover(toy_root), "quick")
    assert sorted(i.task_type for i in chosen) == sorted(
        ["STS", "Classification", "Clustering", "PairClassification", "Reranking", "Retrieval"]
    )
    with pytest.raises(ValueError, match="Unknown suite"):
        select(discover(toy_root), "huge")


def test_default_routes_and_overrides(toy_root):
    enc = FakeEncoder()
    _run(enc, toy_root, datasets="ToySTS,ToyRetrieval,ToyClassification,ToyClustering")
    assert set(enc.calls) == {"query", "document", "classification", "clustering"}
    # STS and pair classification encode both sides as queries; retrieval queries -> query, corpus -> document
    from mote.eval import discover

    infos = discover(toy_root)
    assert resolve_routes(infos["ToyPairs"]) == {"text": "query"}
    assert resolve_routes(infos["ToyReranking"]) == {"query": "query", "document": "document"}
    assert resolve_routes(infos["ToySTS"], {"STS": "classification"}) == {"text": "classification"}
    assert resolve_routes(infos["ToyRetrieval"], {"Retrieval.document": "query"}) == {
        "query": "query",
        "document": "query",
    }
    assert resolve_routes(infos["ToySTS"], {"STS": "document", "ToySTS": "clustering"}) == {"text": "clustering"}
    enc = FakeEncoder()
    res = _run(enc, toy_root, datasets="ToySTS", routes=["STS=clustering"])
    assert set(enc.calls) == {"clustering"} and res["datasets"]["ToySTS"]["routes"] == {"text": "clustering"}
    with pytest.raises(ValueError, match="neither a task type"):
        _run(FakeEncoder(), toy_root, datasets="ToySTS", routes=["Nope=query"])


def test_each_unique_text_is_encoded_once_per_task(toy_root):
    enc = FakeEncoder()
    _run(enc, toy_root, datasets="ToyClustering")
    texts = enc.texts["clustering"]
    assert len(texts) == len(set(texts))
    with gzip.open(toy_root / "ToyClustering" / "test.jsonl.gz", "rt") as f:
        n_sentences = sum(len(json.loads(line)["sentences"]) for line in f)
    assert len(texts) < n_sentences  # the sets share sentences (as MTEB's TwentyNewsgroups sets do)
    enc = FakeEncoder()
    _run(enc, toy_root, datasets="ToyReranking")
    for task in ("query", "document"):
        assert len(enc.texts[task]) == len(set(enc.texts[task]))


def test_unknown_dataset_lists_the_available_ones(toy_root):
    with pytest.raises(UnknownDatasetError, match="ToyClassification.*ToyClustering") as e:
        _run(FakeEncoder(), toy_root, datasets="ToySTS,NoSuchSet")
    assert "NoSuchSet" in str(e.value) and "train-Toy" not in str(e.value)


def test_missing_data_dir_names_both_ways_to_set_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        _run(FakeEncoder(), tmp_path / "absent")
    monkeypatch.setenv("MOTE_DATA", str(tmp_path / "absent2"))
    with pytest.raises(FileNotFoundError, match="MOTE_DATA"):
        evaluate(FakeEncoder(), cache=False, quiet=True)


@pytest.mark.parametrize(
    ("dataset", "line", "needle"),
    [
        (
            "ToySTS",
            '{"sentence1": "a", "sentence2": "b", "score": 1.0}\n{"sentence1": "a", "sente\n',
            "not valid JSON",
        ),
        (
            "ToySTS",
            '{"sentence1": "a", "sentence2": "b", "score": 1.0}\n{"sentence1": "a", "score": 2}\n',
            "sentence2",
        ),
        (
            "ToyPairs",
            '{"sentence1": "a", "sentence2": "b", "label": 1}\n{"sentence1": "a", "sentence2": "b", "label": 7}\n',
            "label must be 0 or 1",
        ),
    ],
)
def test_malformed_line_names_file_and_line(toy_root, tmp_path, dataset, line, needle):
    root = tmp_path / "data"
    shutil.copytree(toy_root, root)
    with gzip.open(root / dataset / "test.jsonl.gz", "wt") as f:
        f.write(line)
    with pytest.raises(DatasetFormatError, match=rf"test\.jsonl\.gz:2: .*{needle}"):
        _run(FakeEncoder(), root, datasets=dataset)


def test_bad_qrels_line_names_file_and_line(toy_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(toy_root, root)
    qrels = root / "ToyRetrieval" / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "sport-q0\tno-such-doc\t1\n")
    n = len(qrels.read_text().splitlines())
    with pytest.raises(DatasetFormatError, match=rf"test\.tsv:{n}: corpus id 'no-such-doc'"):
        _run(FakeEncoder(), root, datasets="ToyRetrieval")


class _Interrupting(FakeEncoder):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def encode(self, texts, task, **kw):
        if sum(self.calls.values()) >= self.after:
            raise KeyboardInterrupt
        return super().encode(texts, task, **kw)


def test_interrupted_run_leaves_nothing_half_written(toy_root, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(_Interrupting(after=60), toy_root, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # an existing run folder survives an interrupted --overwrite untouched
    _run(FakeEncoder(), toy_root, out, datasets="ToySTS")
    before = (out / "results.json").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        _run(_Interrupting(after=0), toy_root, out, datasets="ToyPairs", overwrite=True)
    assert (out / "results.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with pytest.raises(FileExistsError, match="overwrite"):
        _run(FakeEncoder(), toy_root, out, datasets="ToySTS")


# ------------------------------------------------------------------------------------------------ cache
def test_warm_cache_encodes_nothing_and_gives_identical_results(toy_root, tmp_path):
    cache = tmp_path / "cache"
    cold_enc, warm_enc = FakeEncoder(), FakeEncoder()
    cold = _run(cold_enc, toy_root, cache=cache)
    warm = _run(warm_enc, toy_root, cache=cache)
    assert sum(cold_enc.calls.values()) > 0 and sum(warm_enc.calls.values()) == 0
    for name in cold["datasets"]:
        assert warm["datasets"][name]["metrics"] == cold["datasets"][name]["metrics"]
    other = FakeEncoder(identity="fake-v2")  # another model identity never reads these entries
    _run(other, toy_root, cache=cache, datasets="ToySTS")
    assert sum(other.calls.values()) > 0


def test_cache_keeps_finished_chunks_after_an_interruption_and_ignores_damaged_entries(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    texts = [f"text number {i}" for i in range(10)]
    enc = _Interrupting(after=4)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(enc, texts, "query", cache=cache, chunk_size=4)
    assert cache.count("fake-v1") == 4  # the first chunk was committed whole, the second not at all
    # damage one stored vector: it is re-encoded instead of trusted
    cache.conn.execute("UPDATE embeddings SET vec = X'00' WHERE key = (SELECT key FROM embeddings LIMIT 1)")
    enc = FakeEncoder()
    emb = embed_texts(enc, texts, "query", cache=cache, chunk_size=4)
    assert enc.calls["query"] == 7  # 6 never stored + 1 damaged
    np.testing.assert_allclose(emb, FakeEncoder().encode(texts, "query"), rtol=1e-6)
    assert cache.count("fake-v1") == 10
    cache.close()


def test_dense_encoder_shares_cache_entries_across_tasks_ic_does_not(tiny_model, tmp_path):
    dense, ic = load_encoder(str(tiny_model), mode="dense"), load_encoder(str(tiny_model), mode="ic")
    assert dense.task_key("query") == dense.task_key("classification")
    assert ic.task_key("query") != ic.task_key("classification")
    assert dense.identity != ic.identity
    texts = ["hello world", "a b c"]
    np.testing.assert_allclose(dense.encode(texts, "query"), dense.encode(texts, "clustering"))
    assert not np.allclose(ic.encode(texts, "query"), ic.encode(texts, "clustering"))


# ------------------------------------------------------------------------------------------------ model kinds
def test_mote_model_equals_ic_baseline_of_its_base_and_tiny_models_run_end_to_end(tiny_model, toy_root, tmp_path):
    mote_dir = tmp_path / "tiny-mote"
    mote.convert(str(tiny_model)).save(str(mote_dir))
    runs = {}
    for label, spec, mode in (("mote", mote_dir, "auto"), ("ic", tiny_model, "ic"), ("dense", tiny_model, "dense")):
        runs[label] = _run(str(spec), toy_root, tmp_path / label, mode=mode, datasets="ToySTS,ToyRetrieval")
    assert runs["mote"]["encoder"]["kind"] == "mote" and runs["ic"]["encoder"]["kind"] == "ic"
    for name in ("ToySTS", "ToyRetrieval"):
        assert runs["mote"]["datasets"][name]["main_score"] == pytest.approx(
            runs["ic"]["datasets"][name]["main_score"], abs=1e-4
        )
    with pytest.raises(ValueError, match="is a MoTE model"):
        load_encoder(str(mote_dir), mode="ic")


def test_tsembed_folder_is_evaluated_with_its_own_task_routing(tiny_model, toy_root, tmp_path):
    from sentence_transformers import SentenceTransformer

    from mote.lora import MoELoRAConfig
    from mote.lora.st import convert as convert_tsembed
    from mote.parameter_counts import parameter_counts

    folder = tmp_path / "tiny-tsembed"
    base = SentenceTransformer(str(tiny_model))
    model = convert_tsembed(base, MoELoRAConfig(num_experts=4, top_k=1, r=2))
    model.save(str(folder))
    counts, n_base = parameter_counts(model), sum(p.numel() for p in base.parameters())
    assert counts["dense"] == n_base < counts["active"] < counts["total"]  # top-1 of 4 LoRA experts per token
    enc = load_encoder(str(folder))
    assert enc.kind == "TSEmbedTransformer" and enc.encode([], "query").shape[0] == 0
    ts = _run(str(folder), toy_root, datasets="ToySTS,ToyRetrieval")
    ic = _run(str(tiny_model), toy_root, mode="ic", datasets="ToySTS,ToyRetrieval")
    for name in ("ToySTS", "ToyRetrieval"):  # fresh LoRA experts are a no-op: the IC baseline's scores
        assert ts["datasets"][name]["main_score"] == pytest.approx(ic["datasets"][name]["main_score"], abs=1e-4)


def test_encoder_hooks_replace_cosine_and_combine_views(toy_root):
    class Hooked(FakeEncoder):
        def __init__(self):
            super().__init__(identity="hooked")
            self.used: set[str] = set()

        def pair_scores(self, a, b):
            self.used.add("pair_scores")
            return -np.einsum("ij,ij->i", a, b)  # anti-similarity: STS correlation flips sign

        def score_matrix(self, q, d):
            self.used.add("score_matrix")
            return q @ d.T

        def fit_scores(self, q, d):  # once per retrieval/reranking dataset, with all its embeddings
            self.fitted.append((len(q), len(d)))
            return self

        def views(self, emb):
            self.used.add("views")
            return [("first", emb[:, :8], 1.0), ("second", emb[:, 8:], 0.5)]

        def combine_predictions(self, preds, weights, kind):
            self.used.add("combine_predictions")
            self.kinds.add(kind)
            return preds[0]

    hooked, plain = Hooked(), FakeEncoder()
    hooked.fitted, hooked.kinds = [], set()
    a = _run(hooked, toy_root, datasets="ToySTS,ToyClassification,ToyClustering,ToyRetrieval")
    b = _run(plain, toy_root, datasets="ToySTS")
    assert hooked.used == {"pair_scores", "score_matrix", "views", "combine_predictions"}
    assert hooked.kinds == {"classification", "clustering"}
    n_queries = a["datasets"]["ToyRetrieval"]["n_items"]
    assert len(hooked.fitted) == 1 and hooked.fitted[0][0] == n_queries  # one fit, all queries at once
    assert a["datasets"]["ToySTS"]["main_score"] < 0 < b["datasets"]["ToySTS"]["main_score"]
    assert a["encoder"]["hooks"] == ["pair_scores", "score_matrix", "fit_scores", "views", "combine_predictions"]


def test_moee_option_without_mote_moee_support_is_a_clear_error(toy_root, tmp_path, capsys, monkeypatch):
    import mote.moee
    from mote.cli import main

    monkeypatch.delattr(mote.moee, "encoder_for_eval", raising=False)
    rc = main(["eval", "x", "--moee", "mean", "--output", str(tmp_path / "o"), "--data-dir", str(toy_root)])
    assert rc == 2 and "encoder_for_eval" in capsys.readouterr().err


def test_moee_option_calls_encoder_for_eval(toy_root, tmp_path, monkeypatch):
    import mote.moee
    from mote.cli import main

    seen = {}

    def fake_factory(model, **kwargs):
        seen.update(model=model, **kwargs)
        return FakeEncoder("moee-fake")

    monkeypatch.setattr(mote.moee, "encoder_for_eval", fake_factory)
    out = tmp_path / "o"
    argv = [
        "eval",
        "some-moe",
        "--moee",
        "sum",
        "--alpha",
        "auto",
        "--output",
        str(out),
        "--data-dir",
        str(toy_root),
        "--datasets",
        "ToySTS",
        "--no-cache",
        "--moee-opt",
        "rw_scores=logits",
        "--moee-opt",
        "preprocess=true",
    ]
    assert main(argv) == 0
    assert seen == {"model": "some-moe", "view": "sum", "alpha": "auto", "rw_scores": "logits", "preprocess": True}
    assert json.loads((out / "results.json").read_text())["model"] == "moee-fake"


def test_auto_split_scores_the_rows_mteb_scores(toy_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(toy_root / "ToyPairs", root / "ToyPairs")
    with gzip.open(root / "ToyPairs" / "test.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    write_jsonl_gz(root / "ToyPairs" / "test-mteb99.jsonl.gz", rows + rows[:3])  # MTEB scores more rows
    auto = _run(FakeEncoder(), root)["datasets"]["ToyPairs"]
    plain = _run(FakeEncoder(), root, split="test")["datasets"]["ToyPairs"]
    assert (auto["split"], auto["n_items"]) == ("test-mteb99", len(rows) + 3)
    assert (plain["split"], plain["n_items"]) == ("test", len(rows))


def test_each_suite_scores_its_own_split(toy_root, tmp_path, monkeypatch):
    from mote.eval import datasets as ds

    root = tmp_path / "data"
    for name in ("ToyPairs", "ToyClassification", "ToyClustering"):
        shutil.copytree(toy_root / name, root / name)
    with gzip.open(root / "ToyPairs" / "test.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    write_jsonl_gz(root / "ToyPairs" / "test-mteb99.jsonl.gz", rows + rows[:3])
    with gzip.open(root / "ToyClassification" / "test.jsonl.gz", "rt") as f:
        test = [json.loads(line) for line in f]
    write_jsonl_gz(root / "ToyClassification" / "test-sample5.jsonl.gz", test[:5])  # a CPU-sized sample
    monkeypatch.setitem(ds.DEFAULT_SPLITS, "ToyClustering", "test[1:]")  # a choice of the default suite
    splits = {
        suite: {k: (v["split"], v["n_items"]) for k, v in _run(FakeEncoder(), root, suite=suite)["datasets"].items()}
        for suite in ("default", "mteb")
    }
    with gzip.open(root / "ToyClustering" / "test.jsonl.gz", "rt") as f:
        set_sizes = [len(json.loads(line)["sentences"]) for line in f]
    assert splits["mteb"] == {
        "ToyPairs": ("test-mteb99", len(rows) + 3),
        "ToyClassification": ("test", len(test)),
        "ToyClustering": ("test", sum(set_sizes)),
    }
    assert splits["default"] == {
        "ToyPairs": ("test-mteb99", len(rows) + 3),  # no choice of the default suite: MTEB's split
        "ToyClassification": ("test-sample5", 5),
        "ToyClustering": ("test[1:]", sum(set_sizes[1:])),
    }
    # --datasets keeps the suite's splits; an explicit split wins
    one = _run(FakeEncoder(), root, suite="mteb", datasets="ToyClassification")["datasets"]["ToyClassification"]
    assert one["split"] == "test"
    assert _run(FakeEncoder(), root, datasets="ToyClassification")["datasets"]["ToyClassification"]["split"] == (
        "test-sample5"
    )
    with pytest.raises(ValueError, match="Unknown suite 'huge'"):
        _run(FakeEncoder(), root, suite="huge", datasets="ToyPairs")


def test_split_item_selector_takes_the_same_lines_of_each_field(toy_root):
    from mote.eval import datasets as ds

    infos = ds.discover(toy_root)
    full, every2 = ds.load(infos["ToySTS"], "test"), ds.load(infos["ToySTS"], "test[::2]")
    assert every2.sentence1 == full.sentence1[::2] and every2.scores == full.scores[::2]
    cls, cls_tail = ds.load(infos["ToyClassification"]), ds.load(infos["ToyClassification"], "test[-3:]")
    assert cls_tail.test_labels == cls.test_labels[-3:] and cls_tail.train_texts == cls.train_texts  # train kept
    res = _run(FakeEncoder(), toy_root, datasets="ToyReranking", split="test[:4]")["datasets"]["ToyReranking"]
    assert (res["split"], res["n_items"]) == ("test[:4]", 4)
    assert ds.split_file(infos["ToySTS"], "test[::2]").name == "test.jsonl.gz"
    with pytest.raises(ValueError, match="not on Retrieval"):
        ds.load(infos["ToyRetrieval"], "test[::2]")
    for bad in ("test[2]", "test[::0]", "test[a:b]"):
        with pytest.raises(ValueError, match="Bad split"):
            ds.load(infos["ToySTS"], bad)
    with pytest.raises(DatasetFormatError, match="no items"):
        ds.load(infos["ToySTS"], "test[1000:]")


# ------------------------------------------------------------------------------------------------ compare, similarity
def test_compare_two_runs_tables_significance_and_plots(toy_root, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    _run(FakeEncoder("plain"), toy_root, a)
    _run(FakeEncoder("salted", salt_by_task=True, identity="salted"), toy_root, b)
    res = compare([b, a], base=a, output=tmp_path / "cmp", n_boot=50)
    assert res["base"] == "plain"
    comp = res["comparisons"]["salted"]
    assert set(comp["per_dataset"]) == set(res["common_datasets"]) and len(res["common_datasets"]) == 6
    for name, d in comp["per_dataset"].items():
        assert d["bootstrap"] is not None and 0 <= d["bootstrap"]["p"] <= 1, name
        assert d["delta"] == pytest.approx(res["scores"]["salted"][name] - res["scores"]["plain"][name])
    assert comp["across_datasets"]["n_datasets"] == 6 and "wilcoxon_p" in comp["across_datasets"]
    cats = res["category_means"]["plain"]
    assert res["overall"]["plain"]["mean_over_categories"] == pytest.approx(np.mean(list(cats.values())))
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Wilcoxon" in md and "paired bootstrap" in md and "mean over categories" in md
    for png in ("scores.png", "gains.png", "categories.png"):
        assert (tmp_path / "cmp" / png).read_bytes()[:4] == b"\x89PNG"
    # identical runs: no difference, p = 1
    same = compare([a, a], n_boot=20)
    assert all(
        d["bootstrap"]["p"] == 1.0
        for d in same["comparisons"][next(iter(same["comparisons"]))]["per_dataset"].values()
    )


def test_compare_refuses_to_pair_runs_on_different_data(toy_root, tmp_path):
    root2 = tmp_path / "data2"
    shutil.copytree(toy_root, root2)
    write_jsonl_gz(
        root2 / "ToySTS" / "test.jsonl.gz",
        [{"sentence1": f"a {i}", "sentence2": f"b {i % 3}", "score": float(i % 5)} for i in range(20)],
    )
    _run(FakeEncoder(), toy_root, tmp_path / "a", datasets="ToySTS,ToyPairs")
    _run(FakeEncoder(), root2, tmp_path / "b", datasets="ToySTS,ToyPairs")
    res = compare([tmp_path / "a", tmp_path / "b"], n_boot=10)
    per = res["comparisons"][next(iter(res["comparisons"]))]["per_dataset"]
    assert per["ToySTS"]["bootstrap"] is None and "differ" in per["ToySTS"]["note"]
    assert per["ToyPairs"]["bootstrap"] is not None


def test_task_similarity_mote_ic_and_dense(tiny_model, tmp_path):
    texts = ["how do magnets work", "the cat sat on the mat", "stock prices fell sharply"]
    ic = task_similarity(str(tiny_model), texts, mode="ic", output=tmp_path / "sim", cache=False, show_progress=False)
    m = np.asarray(ic["matrix"])
    assert ic["tasks"] == ["query", "document", "classification", "clustering"]
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-5)
    np.testing.assert_allclose(m, m.T, atol=1e-6)
    assert m[0, 1] < 0.9999  # different prefixes, different views
    assert (tmp_path / "sim" / "similarity.png").read_bytes()[:4] == b"\x89PNG"
    dense = task_similarity(str(tiny_model), texts, mode="dense", cache=False, show_progress=False)
    np.testing.assert_allclose(dense["matrix"], 1.0, atol=1e-5)  # no prefixes: every view is the same
    mote_dir = tmp_path / "m"
    mote.convert(str(tiny_model)).save(str(mote_dir))
    sim = task_similarity(str(mote_dir), texts, cache=False, show_progress=False)
    np.testing.assert_allclose(sim["matrix"], ic["matrix"], atol=1e-5)  # freshly converted: experts = the base FFN


def test_cli_eval_compare_similarity(tiny_model, toy_root, tmp_path, capsys):
    from mote.cli import main

    base = ["--data-dir", str(toy_root), "--datasets", "ToySTS,ToyReranking", "--no-cache"]
    assert main(["eval", str(tiny_model), "--output", str(tmp_path / "d"), "--dense", *base]) == 0
    assert (
        main(
            ["eval", str(tiny_model), "--output", str(tmp_path / "i"), "--ic", *base, "--route", "STS=classification"]
        )
        == 0
    )
    assert json.loads((tmp_path / "i" / "results.json").read_text())["routes"]["ToySTS"] == {"text": "classification"}
    assert (
        main(["compare", str(tmp_path / "d"), str(tmp_path / "i"), "--output", str(tmp_path / "c"), "--n-boot", "20"])
        == 0
    )
    assert (tmp_path / "c" / "compare.md").is_file()
    texts = tmp_path / "t.txt"
    texts.write_text("one text\nanother text\n")
    assert (
        main(
            [
                "similarity",
                str(tiny_model),
                "--ic",
                "--texts",
                str(texts),
                "--output",
                str(tmp_path / "s"),
                "--no-cache",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Inter-task similarity" in out and "Significance" in out
    assert main(["eval", str(tiny_model), "--output", str(tmp_path / "x"), "--datasets", "Nope", *base[:2]]) == 2
    assert "Available evaluation datasets" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ToyRetrieval", "ToyReranking", "ToySTS"])
def test_main_score_only_gives_the_full_main_score_without_the_abstention_metrics(toy_root, name):
    from mote.eval import datasets as ds
    from mote.eval.harness import evaluate_dataset

    info = ds.discover(toy_root)[name]
    full, full_items = evaluate_dataset(FakeEncoder(), info, split="test")
    fast, fast_items = evaluate_dataset(FakeEncoder(), info, split="test", full=False)
    assert fast["main_score"] == full["main_score"] and fast["main_metric"] == full["main_metric"]
    assert {k: v for k, v in full["metrics"].items() if not k.startswith("nauc")} == fast["metrics"]
    assert all(np.array_equal(full_items[k], fast_items[k]) for k in full_items)
    assert any(k.startswith("nauc") for k in full["metrics"]) == (name != "ToySTS")
