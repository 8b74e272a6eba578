"""The adapters (src/mote/adapters/) are the only code that touches private parts of mteb, transformers,
sentence-transformers and torch, and what they touch still exists with the signature they call.

An upgrade of a dependency that renames or re-signs one of those private parts fails here, naming it; code outside
the adapters that starts using a private part fails ``test_no_private_library_use_outside_the_adapters``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mote"
ADAPTERS = SRC / "adapters"
LIBS = ("mteb", "transformers", "sentence_transformers", "torch")


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _parameters(func) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(func).parameters if p != "self")


# ------------------------------------------------------------------------------------------------ the adapters
@pytest.mark.parametrize("owner,name,params", __import__("mote.adapters.mteb", fromlist=["USED"]).USED)
def test_mteb_private_steps_exist_with_the_called_signature(owner, name, params):
    method = getattr(_resolve(owner), name, None)
    assert method is not None, f"mteb changed: {owner}.{name} is gone (mote.adapters.mteb calls it)"
    assert _parameters(method) == params, f"mteb changed the signature of {owner}.{name}"


def test_mteb_retrieval_metrics_module():
    from mteb._evaluators import retrieval_metrics

    assert _parameters(retrieval_metrics.calculate_retrieval_scores)[:3] == ("results", "qrels", "k_values")
    assert {"ndcg", "_map", "recall", "precision", "mrr", "naucs", "naucs_mrr", "hit_rate", "task_scores"} <= set(
        _parameters(retrieval_metrics.make_score_dict))


def test_mteb_retrieval_adapter_scores_a_perfect_ranking():
    from mote.adapters.mteb import retrieval_metrics

    metrics, per_query = retrieval_metrics({"q": {"d1": 2.0, "d2": 1.0}}, {"q": {"d1": 1}}, [1, 10])
    assert metrics["ndcg_at_1"] == 1.0 and metrics["mrr_at_10"] == 1.0
    assert "q" in str(per_query) or per_query is not None


def test_retrieval_metrics_without_abstention_are_the_full_calls_values_but_the_naucs():
    # the short path repeats mteb's calculate_retrieval_scores without its evaluate_abstention calls: if mteb changes
    # how any other metric is computed, the two disagree here
    import numpy as np

    from mote.adapters.mteb import retrieval_metrics

    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(40)]
    results = {f"q{q}": {d: float(rng.integers(0, 5)) / 4 for d in rng.choice(docs, 25, replace=False)}
               for q in range(30)}  # rounded scores: ties, broken as mteb breaks them
    qrels = {q: {str(d): 1 for d in rng.choice(docs, int(rng.integers(1, 4)), replace=False)} for q in results}
    full, full_per_query = retrieval_metrics(results, qrels, [1, 3, 10, 100])
    fast, fast_per_query = retrieval_metrics(results, qrels, [1, 3, 10, 100], abstention=False)
    naucs = {k for k in full if k.startswith("nauc")}
    assert naucs and not any(k.startswith("nauc") for k in fast)
    assert fast == {k: v for k, v in full.items() if k not in naucs}
    assert fast_per_query == full_per_query
    assert 0 < fast["ndcg_at_10"] < 1


@pytest.mark.parametrize("name", sorted(__import__("mote.adapters.transformers", fromlist=["USED"]).USED))
def test_trainer_private_methods_exist_with_the_called_signature(name):
    from transformers import Trainer

    from mote.adapters.transformers import USED

    method = getattr(Trainer, name, None)
    assert method is not None, f"transformers changed: Trainer.{name} is gone (mote.adapters.transformers)"
    assert _parameters(method) == USED[name], f"transformers changed the signature of Trainer.{name}"


def test_trainer_hooks_sit_between_the_trainer_and_transformers():
    from sentence_transformers import SentenceTransformerTrainer

    from mote.adapters.transformers import USED, TrainerHooks
    from mote.train.mote_trainer import MoteTrainer

    mro = MoteTrainer.__mro__
    assert mro.index(TrainerHooks) < mro.index(SentenceTransformerTrainer)
    assert not set(USED) & set(vars(MoteTrainer))  # MoteTrainer overrides the public hooks only


def test_sentence_transformers_module_class_map():
    from collections.abc import Mapping

    from sentence_transformers.base.model import BaseModel

    import mote
    from mote.adapters.sentence_transformers import ModuleClassMap, registered_module_classes

    assert isinstance(BaseModel._module_classes, Mapping), "sentence-transformers changed BaseModel._module_classes"
    assert "self._module_classes.get(class_ref)" in inspect.getsource(BaseModel), (
        "sentence-transformers no longer looks module classes up with .get (mote.adapters.sentence_transformers)")
    assert registered_module_classes()["mote.model.MoTETransformer"] is mote.MoTETransformer
    lazy = ModuleClassMap({}, {"x.Y": "mote.routing:RoutingTable"})
    assert lazy.get("x.Y") is mote.RoutingTable and lazy.get("x.Z") is None and len(lazy) == 1
    lazy.removed["x.Old"] = lambda: mote.ModelFolderError("saved by an old mote: edit modules.json")
    with pytest.raises(mote.ModelFolderError, match="edit modules.json"):  # .get passes only KeyError on
        lazy.get("x.Old")
    assert len(lazy) == 1 and "x.Old" not in list(lazy)
    assert callable(getattr(BaseModel, "_load_with_module_classes", None)), (
        "sentence-transformers changed how it loads module classes (BaseModel._load_with_module_classes)")


# ------------------------------------------------------------------------------------------------ the rule
def _source_files():
    return [p for p in sorted(SRC.rglob("*.py")) if ADAPTERS not in p.parents]


def _own_private_names() -> set[str]:
    """Private names mote itself defines (functions, classes, attributes it sets on self / cls, its markers)."""
    own: set[str] = set()
    for path in SRC.rglob("*.py"):
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and (
                    getattr(n.value, "id", "") in ("self", "cls") or n.attr.startswith("_mote")):
                own.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                own.add(n.id)
            elif isinstance(n, ast.arg):
                own.add(n.arg)
    return own


def _private_uses(tree: ast.Module, own: set[str]) -> list[str]:
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and n.module.split(".")[0] in LIBS:
            if any(part.startswith("_") for part in n.module.split(".")):
                out.append(f"line {n.lineno}: from {n.module} import ...")
            out += [f"line {n.lineno}: import of {a.name} from {n.module}" for a in n.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(n, ast.Import):
            out += [f"line {n.lineno}: import {a.name}" for a in n.names
                    if a.name.split(".")[0] in LIBS and any(x.startswith("_") for x in a.name.split("."))]
        elif (isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
              and n.attr not in own):
            out.append(f"line {n.lineno}: {ast.unparse(n)}")
    return out


def test_private_use_finder_can_fail():
    tree = ast.parse("from torch._utils import x\nimport mteb\nmteb.abstasks.T()._normalize(1)\nself._mine = 1\n"
                     "self._mine\nsuper()._run_epoch()\n")
    found = _private_uses(tree, {"_mine"})
    assert [f.split(":")[0] for f in found] == ["line 1", "line 3", "line 6"]


def test_no_private_library_use_outside_the_adapters():
    own = _own_private_names()
    wrong = {}
    for path in _source_files():
        text = path.read_text(encoding="utf-8")
        if not any(lib in text for lib in LIBS):
            continue
        uses = _private_uses(ast.parse(text), own)
        if uses:
            wrong[str(path.relative_to(SRC))] = uses
    assert wrong == {}, f"private parts of {LIBS} outside src/mote/adapters (move them into an adapter): {wrong}"


def test_no_override_of_a_private_library_method_outside_the_adapters():
    """A mote class that subclasses a library class overrides none of its private methods (e.g. ``_run_epoch``);
    the adapters' mixins do that, behind public-named hooks."""
    wrong = []
    for path in _source_files():
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if name in ("mote.onnx.runtime",):  # optional onnxruntime extra
            continue
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            lib_bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] in LIBS]
            for attr, value in vars(cls).items():
                private = attr.startswith("_") and not attr.startswith("__") and inspect.isfunction(value)
                if private and any(attr in vars(b) for b in lib_bases):
                    wrong.append(f"{name}.{cls.__name__}.{attr}")
    assert wrong == []


# ------------------------------------------------------------------------------------------------ encoder prefix
def test_encoder_prefix_cache_is_bitwise_skips_a_repeated_batch_and_leaves_no_trace(tiny_bert):
    # transformers' encoder loop calls encoder.layer[i](hidden, mask, ...) in order: if a release changes that, the
    # cached encode stops being bitwise (or stops skipping) and this fails
    import numpy as np
    import torch

    import mote
    from mote.adapters.encoder_prefix import LayerPrefixCache
    from mote.api import encoder_of
    from mote.experts import transformer_layers

    model = mote.convert(tiny_bert, placement="1,3")
    hf = encoder_of(model)
    texts = ["a short one", "a much longer sentence with many more tokens in it than the first", "mid length text"]
    with torch.no_grad():
        for layer in transformer_layers(hf)[1:]:  # the experts differ from the base, as candidates do
            for p in layer.parameters():
                p.add_(0.01 * torch.randn_like(p))
    plain = {t: mote.encode(model, texts, task=t, batch_size=2) for t in ("query", "document")}
    keys = sorted(hf.state_dict())
    calls = []
    attention = transformer_layers(hf)[0].attention
    handle = attention.register_forward_hook(lambda *a: calls.append(1))
    try:
        with LayerPrefixCache(transformer_layers(hf)[:1]) as prefix:
            assert sorted(hf.state_dict()) == keys  # names and weights stay where they are
            prefix.scope = "base"
            first = {t: mote.encode(model, texts, task=t, batch_size=2) for t in ("query", "document")}
            n_first = len(calls)
            again = {t: mote.encode(model, texts, task=t, batch_size=2) for t in ("query", "document")}
            assert len(calls) == n_first and prefix.hits == prefix.misses == n_first  # every batch came back
            prefix.scope = "other shared weights"  # another scope: computed again
            mote.encode(model, texts, task="query", batch_size=2)
            assert len(calls) > n_first
            prefix.scope = None  # off: every layer runs, nothing is stored
            before = (len(calls), prefix.misses)
            mote.encode(model, texts, task="query", batch_size=2)
            assert len(calls) > before[0] and prefix.misses == before[1]
    finally:
        handle.remove()
    for t in plain:
        assert np.array_equal(plain[t], first[t]) and np.array_equal(plain[t], again[t]), t
    assert not np.array_equal(plain["query"], plain["document"])  # the experts differ: the test can tell
    assert all("forward" not in vars(layer) for layer in transformer_layers(hf))
    with torch.no_grad():
        assert np.array_equal(mote.encode(model, texts, task="query", batch_size=2), plain["query"])
