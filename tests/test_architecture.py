"""The package's shape: one-way layers, no import cycles, methods known only to their registry, and the lab (the
``mote_lab`` package in lab/) on top, using the library's public API only.

The layer order is the one docs/architecture.md documents (``LAYERS``, lowest first). A module may import modules of
its own layer or of lower layers, never of a higher one, at top level or inside a function; imports under
``if TYPE_CHECKING:`` are annotations only and do not count. The import graph of the modules is acyclic (top-level
and function-level imports together), up to the pairs listed in ``KNOWN_CYCLES`` with their reason.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "mote"
LAB = ROOT / "lab"
LAB_PACKAGE = LAB / "mote_lab"

# Lowest first. A unit is a subpackage (mote.lora), a top-level module (mote.routing) or every subpackage's cli.py.
LAYERS: list[tuple[str, ...]] = [
    ("mote.adapters",),  # the only code that touches private parts of the libraries (tests/test_adapters.py)
    ("mote.atomic", "mote.files", "mote.batching"),
    ("mote.base_models",),
    ("mote.routing",),
    ("mote.experts", "mote.matryoshka", "mote.load_balancing", "mote.task_calls"),
    ("mote.model",),
    ("mote.api",),  # convert / load / encode over the module class
    ("mote.export", "mote.ablations"),
    ("mote.lora",),
    ("mote.data", "mote.parameter_counts", "mote.moee", "mote.onnx"),
    ("mote.eval", "mote.mteb"),
    ("mote.methods",),
    ("mote.train", "mote.select"),  # peers: training keeps snapshots for selection, selection reads them
    ("mote.serve",),  # `mote serve` on Ray Serve: below the verbs, above every library part it serves
    ("mote.demo", "mote.cli", "mote.*.cli"),
    ("mote_lab",),  # the lab (lab/mote_lab): the experiments, on the library's public API (test below)
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}

# Module groups importing each other (inside functions), with the reason they still do. None is left: a new cycle
# fails test_no_import_cycles_but_the_known_ones (move what both sides need into a module both import).
KNOWN_CYCLES: dict[frozenset[str], str] = {}

METHOD_NAMES = ("mote", "ic", "static", "tlr", "ic-matched", "tsembed", "tsembed-noeans")
NO_METHOD_NAMES = ["src/mote/train/trainer.py", "src/mote/train/parts.py", "src/mote/train/mote_trainer.py",
                   "src/mote/train/tsembed.py", "src/mote/train/cli.py", "lab/mote_lab/runner.py",
                   "lab/mote_lab/plan.py", "lab/mote_lab/report.py", "lab/mote_lab/summary.py",
                   "lab/mote_lab/significance.py", "src/mote/cli.py", "src/mote/serve/backends.py"]


def _modules() -> dict[str, Path]:
    out = {}
    for root, package in ((SRC, PACKAGE), (LAB, LAB_PACKAGE)):
        for path in package.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    if module.split(".")[0] == "mote_lab":
        return "mote_lab"
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return "mote.*.cli" if len(parts) >= 3 and parts[2] == "cli" else f"mote.{parts[1]}"
    return module


def _target(name: str) -> str | None:
    """The module of ``mote`` that an imported name lives in (``mote.a.b.func`` -> ``mote.a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """``(imported module name, at top level)`` for every import of the file, skipping TYPE_CHECKING blocks."""
    out: list[tuple[str, bool]] = []

    def visit(nodes: list[ast.AST], top: bool) -> None:
        for child in nodes:
            if isinstance(child, ast.If) and _is_type_checking(child):
                visit(child.orelse, top)
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    out.append((full if full in MODULES else child.module, top))
            elif isinstance(child, ast.Import):
                out.extend((alias.name, top) for alias in child.names)
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(list(ast.iter_child_nodes(child)), inner)

    visit(tree.body, True)
    return [(name, top) for name, top in out if name.split(".")[0] in ("mote", "mote_lab")]


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, top in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = _target(name)
            if target and target not in (module, "mote", "mote_lab") and (top or not top_level_only):
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_readme_layout_names_every_top_level_module_and_package():
    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    names = set(re.findall(r"[\w.]+(?:\.py|/)", layout))
    entries = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    entries |= {f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(entries - names) == [], "describe these in the README's Layout section"


def test_every_module_has_a_layer():
    missing = sorted({_unit(m) for m in MODULES if m not in ("mote", "mote_lab")} - set(RANK))
    assert not missing, f"add these to LAYERS (and docs/architecture.md): {missing}"


def test_top_level_imports_are_acyclic():
    assert _cycles(_graph(top_level_only=True)) == []


def test_no_import_cycles_but_the_known_ones():
    cycles = [c for c in _cycles(_graph(top_level_only=False)) if frozenset(c) not in KNOWN_CYCLES]
    assert cycles == [], f"import cycles (move what both sides need into a module both import): {cycles}"


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking():
    # the checks above can fail: the walk finds a function-level import, and ignores annotation-only ones
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mote.train import x\n"
                     "def f():\n    from mote_lab.runner import y\n")
    assert _imports(tree) == [("mote_lab.runner", False)]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]


def test_the_recipe_and_selection_share_only_the_select_section():
    """A recipe checks its ``select:`` section (mote.select.config, recipe_problems included) and selection reads the
    recipe a run saved (mote.train.config): train.config imports nothing else of mote.select, so the two never form
    a cycle again (they did through select.run.recipe_problems)."""
    graph = _graph(top_level_only=False)
    assert {t for t in graph["mote.train.config"] if t.startswith("mote.select")} == {"mote.select.config"}
    assert not {t for t in graph["mote.select.config"] if t.startswith("mote.train")}
    assert not [c for c in _cycles(graph) if "mote.train.config" in c]


def test_layers_import_only_downwards():
    wrong = []
    for module, targets in _graph(top_level_only=False).items():
        if module in ("mote", "mote_lab"):
            continue
        for target in targets:
            if RANK[_unit(target)] > RANK[_unit(module)]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports from a lower layer into a higher one (see LAYERS):\n" + "\n".join(sorted(wrong))


def test_importing_a_layer_loads_no_higher_layer():
    """Import the modules layer by layer, lowest first, in a fresh interpreter; after each layer no module of a
    higher layer may be loaded (a runtime check of the order, including what imports run at import time).

    ``import mote`` (which any ``import mote.x`` runs first) loads the core, up to ``mote.model``, and registers the
    MoTE module class with sentence-transformers (TLR and TSEmbed lazily, tests/test_lazy_imports.py); it must load
    nothing above that."""
    layers = [[m for m in sorted(MODULES) if m not in ("mote", "mote_lab") and RANK[_unit(m)] == i]
              for i in range(len(LAYERS))]
    skip = {"mote.onnx.runtime", "mote_lab.__main__"}  # onnxruntime: an optional extra; __main__ runs the lab
    script = f"""
import importlib, json, sys
layers = {json.dumps(layers)}
rank = {json.dumps({m: RANK[_unit(m)] for m in MODULES if m not in ("mote", "mote_lab")})}
import mote
facade = set(sys.modules)
out = [[-1, sorted(k for k in facade if rank.get(k, -1) > {RANK["mote.api"]})]]
for i, layer in enumerate(layers):
    for m in layer:
        if m not in {sorted(skip)!r}:
            importlib.import_module(m)
    out.append([i, sorted(k for k in sys.modules if k not in facade and rank.get(k, -1) > i)])
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(LAB), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded_too_early = [(i, mods) for i, mods in json.loads(done.stdout.strip().splitlines()[-1]) if mods]
    assert loaded_too_early == [], [("import mote" if i < 0 else LAYERS[i], mods) for i, mods in loaded_too_early]


@pytest.mark.parametrize("path", NO_METHOD_NAMES)
def test_the_trainer_runner_and_cli_name_no_method(path):
    """They ask the registry (mote.methods): no ``cfg.method.name == "tlr"``, no method-name tuples."""
    text = (ROOT / path).read_text(encoding="utf-8")
    names = "|".join(re.escape(n) for n in METHOD_NAMES)
    hits = [line.strip() for line in text.splitlines()
            if re.search(rf"""(arm|ARMS|method|METHODS|name)\b.*(==|!=|\bin\b|startswith).*["']({names})["']""", line)
            or re.search(r"\b(TSEMBED|MOTE)_(ARMS|METHODS)\b", line)]
    assert hits == []


def test_registry_is_the_method_list():
    from mote.methods import METHOD_CONFIGS, METHODS

    assert tuple(METHODS) == tuple(METHOD_CONFIGS) == METHOD_NAMES


def test_the_method_name_check_can_fail():
    names = "|".join(re.escape(n) for n in METHOD_NAMES)
    pattern = rf"""(arm|ARMS|method|METHODS|name)\b.*(==|!=|\bin\b|startswith).*["']({names})["']"""
    assert re.search(pattern, 'if cfg.method.name == "tlr":')
    assert re.search(pattern, 'if name in ("tsembed", "tsembed-noeans"):')
    assert not re.search(pattern, "if cfg.training_method().router_aux_loss:")


def test_arm_is_not_a_word_of_the_library():
    """One word per concept: the library says *method*; *arm* is the lab's word (one column of an experiment). The
    only place the library spells it is the refusal of the earlier recipe key ``arm:``."""
    refusal = ("`arm: {raw['arm']}` is now `method: {raw['arm']}`", '"arm" in raw', "(``arm:``,",
               'raw.get("arm")  # the earlier key')
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}" for path in sorted(SRC.rglob("*.py"))
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"\barm", line, re.IGNORECASE) and not any(r in line for r in refusal)]
    assert hits == []


# ------------------------------------------------------------------------------------------------ the lab
def _public_api_uses(path: Path) -> list[tuple[str, str]]:
    """``(mote module, name)`` for every name the file takes from the library: ``from mote.x import name`` and, for a
    module imported whole (``from mote.eval import datasets as ds``), every ``ds.attr`` the file reads."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    uses: list[tuple[str, str]] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mote":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    aliases[alias.asname or alias.name] = full
                else:
                    uses.append((node.module, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mote":
                    aliases[alias.asname or "mote"] = "mote"
                elif alias.name.split(".")[0] == "mote":
                    uses.append((alias.name, "(import)"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            uses.append((aliases[node.value.id], node.attr))
    return uses


def test_the_lab_uses_the_library_through_its_public_api_only():
    """Every name the lab takes from ``mote`` is in the ``__all__`` of the module it comes from (a module's
    ``__all__`` is its public API); no private module, no ``import mote.x`` reaching past it."""
    import importlib

    wrong = []
    for path in sorted(LAB_PACKAGE.glob("*.py")):
        for module, name in _public_api_uses(path):
            mod = importlib.import_module(module)
            public = getattr(mod, "__all__", None)
            if name == "(import)" or public is None or name not in public or any(
                    part.startswith("_") for part in module.split(".")):
                wrong.append(f"{path.relative_to(ROOT)}: {module}.{name}")
    assert wrong == [], "the lab reaches past the library's public API (add the name to that module's " \
        "__all__ if it is public):\n" + "\n".join(wrong)


def test_the_public_api_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from mote.eval import datasets as ds\nfrom mote.model import NotAName\nds._private\n")
    assert ("mote.model", "NotAName") in _public_api_uses(bad) and ("mote.eval.datasets", "_private") in \
        _public_api_uses(bad)


def test_the_library_never_imports_the_lab():
    wrong = [f"{m} -> {t}" for m, targets in _graph(top_level_only=False).items() if m.split(".")[0] == "mote"
             for t in targets if t.split(".")[0] == "mote_lab"]
    assert wrong == []
