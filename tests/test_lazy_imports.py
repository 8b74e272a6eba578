"""``import mote`` loads the core only: PEFT-backed ``mote.lora`` and the token-routing ablation load on first use.

Each check runs in a fresh interpreter (this test session has imported everything already). The public names of
``import mote`` still resolve, and ``SentenceTransformer(path)`` still loads TLR and TSEmbed folders after a plain
``import mote``: the module class is imported when a folder names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import perturbed_routed_models

import mote

SRC = Path(__file__).resolve().parents[1] / "src"
LAZY = ("mote.ablations.tlr", "mote.lora", "mote.export")
# The names of `import mote`: its public API, the submodules it imports, and those it loads on first use.
NAMES = sorted({*mote.__all__, "adapters", "atomic", "base_models", "experts", "files", "model", "routing",
                "export", "lora"})
REMOVED = ("io", "tlr")  # the old names of mote.atomic + mote.files and of mote.ablations.tlr, removed 2026-12-07
TEXTS = ["how do magnets work", "a b c"]


def _python(script: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_mote_loads_neither_lora_nor_the_tlr_ablation_and_needs_no_peft():
    # sentence-transformers itself imports PEFT when it is installed, so block it: mote's core must not need it.
    # The method registry lists every method without loading their models (each imports its model in build()).
    # mote.lora itself imports without PEFT (the training recipe reads its TSEmbed plan for every arm); building or
    # loading a TSEmbed model needs it (test_tsembed_models_without_peft_name_the_extra).
    out = _python(f"""
import json, sys
sys.modules["peft"] = None
import mote
from mote.methods import METHODS
assert len(METHODS) >= 7, list(METHODS)
loaded = sorted(m for m in {list(LAZY)!r} if m in sys.modules)
import mote.train.config
lora = type(mote.lora).__name__
print(json.dumps({{"loaded": loaded, "lora": lora, "peft": sorted(m for m in sys.modules if m.startswith("peft."))}}))
""")
    assert out == {"loaded": [], "lora": "module", "peft": []}


DESCRIBE = """
import types
def describe(obj):
    if isinstance(obj, types.ModuleType):
        return "module " + obj.__name__
    if hasattr(obj, "__qualname__"):
        return obj.__module__ + "." + obj.__qualname__
    return repr(obj)
"""


def test_every_name_of_import_mote_still_resolves():
    namespace: dict = {}
    exec(DESCRIBE, namespace)
    expected = {name: namespace["describe"](getattr(mote, name)) for name in NAMES}
    out = _python(f"""
import json, sys
import mote
{DESCRIBE}
before = sorted(m for m in {list(LAZY)!r} if m in sys.modules)
names = {{name: describe(getattr(mote, name)) for name in {NAMES!r}}}
from mote import convert, export, load, lora  # noqa: F401
import mote.ablations.tlr
missing = {{}}
for name in ["no_such_name", *{list(REMOVED)!r}]:
    try:
        getattr(mote, name)
        missing[name] = "resolved"
    except AttributeError as e:
        missing[name] = str(e)
for name in {list(REMOVED)!r}:
    try:
        __import__("mote." + name)
        missing["import mote." + name] = "imported"
    except ImportError as e:
        missing["import mote." + name] = type(e).__name__
print(json.dumps({{"before": before, "names": names, "after": sorted(m for m in {list(LAZY)!r} if m in sys.modules),
                  "missing": missing}}))
""")
    assert out["before"] == []
    assert out["names"] == expected  # the same objects as after importing everything (as this session has)
    assert out["after"] == sorted(LAZY)
    assert out["missing"] == {"no_such_name": "module 'mote' has no attribute 'no_such_name'",
                              "io": "module 'mote' has no attribute 'io'",
                              "tlr": "module 'mote' has no attribute 'tlr'",
                              "import mote.io": "ModuleNotFoundError", "import mote.tlr": "ModuleNotFoundError"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A TLR and a TSEmbed folder with perturbed weights (fresh ones compute the dense model's function)."""
    root = tmp_path_factory.mktemp("lazy")
    token, lora = perturbed_routed_models(root)
    expected = {name: m.encode(TEXTS, task="query").tolist() for name, m in (("tlr", token), ("tsembed", lora))}
    return root, expected


def test_sentence_transformers_loads_tlr_and_tsembed_folders_after_a_plain_import_mote(folders):
    root, expected = folders
    out = _python(f"""
import json, sys
import mote
from sentence_transformers import SentenceTransformer
out = {{}}
for name in ("tlr", "tsembed"):
    model = SentenceTransformer({str(root)!r} + "/" + name, device="cpu")
    cls = type(model[0])
    out[name] = [cls.__module__ + "." + cls.__name__, model.encode({TEXTS!r}, task="query").tolist()]
print(json.dumps(out))
""")
    assert out["tlr"][0] == "mote.ablations.tlr.TLRTransformer"
    assert out["tsembed"][0] == "mote.lora.st.TSEmbedTransformer"
    for name in ("tlr", "tsembed"):
        np.testing.assert_allclose(out[name][1], expected[name], atol=1e-6)


def test_tlr_folders_saved_under_the_removed_class_path_get_one_clear_error(folders, tmp_path, capsys):
    """Folders saved before 2026-12-01 name ``mote.tlr.TLRTransformer`` (removed): ``mote.load`` and the CLI refuse
    them with one error naming the folder and the fix (``SentenceTransformer(path)`` after ``import mote`` with the
    fix), and the fix (the new path in modules.json) loads them."""
    import shutil

    from mote.cli import main

    root, expected = folders
    old = tmp_path / "old-tlr"
    shutil.copytree(root / "tlr", old)
    modules = json.loads((old / "modules.json").read_text())
    assert modules[0]["type"] == "mote.ablations.tlr.TLRTransformer"
    modules[0]["type"] = "mote.tlr.TLRTransformer"
    (old / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(mote.ModelFolderError) as e:
        mote.load(old)
    message = str(e.value)
    assert str(old) in message and "saved by mote before 2026-12" in message and "mote.tlr.TLRTransformer" in message
    assert "change the type 'mote.tlr.TLRTransformer' to 'mote.ablations.tlr.TLRTransformer'" in message
    capsys.readouterr()
    assert main(["info", str(old)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"  # one line, the same message
    out = _python(f"""
import json
import mote
from sentence_transformers import SentenceTransformer
out = []
for trust in (False, True):  # sentence-transformers' own advice would be trust_remote_code=True: no help here either
    try:
        SentenceTransformer({str(old)!r}, device="cpu", trust_remote_code=trust)
        out.append("loaded")
    except mote.ModelFolderError as e:
        out.append(str(e))
print(json.dumps(out))
""")
    assert out[0] == out[1] and out[0].startswith("this model folder was saved by mote before 2026-12")
    assert "change the type 'mote.tlr.TLRTransformer' to 'mote.ablations.tlr.TLRTransformer'" in out[0]
    modules[0]["type"] = "mote.ablations.tlr.TLRTransformer"  # the fix the message names
    (old / "modules.json").write_text(json.dumps(modules))
    np.testing.assert_allclose(mote.load(old).encode(TEXTS, task="query"), expected["tlr"], atol=1e-6)


def test_tsembed_models_without_peft_name_the_extra(folders):
    """PEFT is the ``tsembed`` extra: without it, building and loading a TSEmbed model (library and CLI) fail with
    one line naming ``pip install 'mote[tsembed]'``, while the core CLI still reads MoTE-family folders."""
    root, _ = folders
    out = _python(f"""
import contextlib, io, json, sys
sys.modules["peft"] = None
import mote.lora as tl
from mote.cli import main
out = {{}}
for name, build in [("convert", lambda: tl.convert({str(root / "bert")!r}, tl.MoELoRAConfig(num_experts=4, r=2))),
                    ("load", lambda: tl.load({str(root / "tsembed")!r}))]:
    try:
        build()
        out[name] = "built"
    except ImportError as e:
        out[name] = str(e)
for name in ("tsembed", "tlr"):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main(["info", {str(root)!r} + "/" + name])
    out["info " + name] = [code, err.getvalue(), std.getvalue().splitlines()[:1]]
print(json.dumps(out))
""")
    message = "TSEmbed (MoE-LoRA, mote.lora) models need PEFT, which is not installed: pip install 'mote[tsembed]'"
    assert out["convert"] == message and out["load"] == message
    assert out["info tsembed"][:2] == [2, f"error: {message}\n"]
    assert out["info tlr"][0] == 0 and out["info tlr"][2][0].startswith("base encoder: BertModel")
