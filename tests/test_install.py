"""Issue 29: a slim core install. The core dependencies are what encoding, training and selection need; figures and
reports (matplotlib) are the ``lab`` extra and TSEmbed (PEFT) the ``tsembed`` extra. Every module of the package
imports without either, and a figure without matplotlib fails with one line naming the extra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
OPTIONAL = {"matplotlib": "lab", "peft": "tsembed"}  # a package the core does without -> the extra that installs it


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_the_core_dependencies_leave_out_the_lab_and_tsembed_packages():
    core = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = {name: {_name(r) for r in reqs} for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    assert {"torch", "sentence-transformers", "mteb", "scipy", "scikit-learn"} <= core  # encode, train, select
    for package, extra in OPTIONAL.items():
        assert package not in core, f"{package} is the {extra} extra, not a core dependency"
        assert package in extras[extra]


def test_make_install_installs_every_extra():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = re.findall(r'-e "\.\[([^\]]*)\]"', makefile)
    assert len(installs) == 1, installs
    assert sorted(installs[0].split(",")) == sorted(PYPROJECT["project"]["optional-dependencies"])


def test_the_adapter_file_names_are_pefts():
    peft_constants = pytest.importorskip("peft.utils.constants")
    from mote.lora.model import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME

    assert ADAPTER_CONFIG_NAME == peft_constants.CONFIG_NAME
    assert ADAPTER_WEIGHTS_NAME == peft_constants.SAFETENSORS_WEIGHTS_NAME


def test_every_module_imports_without_matplotlib_and_peft():
    modules = sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                     for p in (SRC / "mote").rglob("*.py"))
    skip = {"mote.onnx.runtime"}  # needs onnxruntime (the onnx extra), tested by tests/test_onnx.py
    script = f"""
import importlib, json, sys
for blocked in {sorted(OPTIONAL)!r}:
    sys.modules[blocked] = None
failed = {{}}
for name in {sorted(set(modules) - skip)!r}:
    try:
        importlib.import_module(name)
    except ImportError as e:
        failed[name] = str(e)
print(json.dumps({{"failed": failed, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {sorted(OPTIONAL)!r}
                                                 and sys.modules[m] is not None)}}))
"""
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(modules) > 90 and "mote.eval.plots" in modules
    assert out == {"failed": {}, "loaded": []}


def test_matplotlib_is_imported_only_inside_the_pyplot_helper():
    """Any module that draws gets pyplot from mote.eval.plots.pyplot, at draw time (never at import time)."""
    import ast

    found = []
    for path in sorted((SRC / "mote").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "matplotlib" for n in names):
                found.append(path.relative_to(SRC).as_posix())
    assert sorted(set(found)) == ["mote/eval/plots.py"]


def test_figures_without_matplotlib_name_the_lab_extra(monkeypatch, tmp_path):
    from mote.eval.plots import pyplot
    from mote_lab.figures import training_curves

    assert pyplot().__name__ == "matplotlib.pyplot"  # installed here: the helper gives pyplot
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    message = "figures need matplotlib, which is not installed (the lab extra): pip install 'mote[lab]'"
    with pytest.raises(ImportError) as e:
        training_curves({"mote": [[(1, 2.0), (2, 1.5)]]}, {}, tmp_path / "curves.png")
    assert str(e.value) == message
    assert not (tmp_path / "curves.png").exists()
