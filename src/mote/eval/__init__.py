"""mote.eval: MTEB-comparable evaluation on the offline suite, task-routed, with comparisons and significance tests.

Library first; the CLI verbs ``mote eval``, ``mote compare`` and ``mote similarity`` are one call each:

    >>> import mote.eval as me
    >>> res = me.evaluate("all-MiniLM-L6-v2", suite="quick", output="runs/eval/minilm-quick")        # doctest: +SKIP
    >>> ic = me.evaluate("all-MiniLM-L6-v2", mode="ic", suite="quick", output="runs/eval/minilm-ic")  # doctest: +SKIP
    >>> cmp = me.compare(["runs/eval/minilm-quick", "runs/eval/minilm-ic"], output="runs/eval/cmp")  # doctest: +SKIP
    >>> sim = me.task_similarity("runs/minilm-mote", ["a text", "another"], output="runs/eval/sim")   # doctest: +SKIP

Anything with ``name``, ``identity`` and ``encode(texts, task)`` can be evaluated (see :mod:`mote.eval.encoders`).
"""

from mote.eval.cache import EmbeddingCache, embed_texts
from mote.eval.compare import compare
from mote.eval.datasets import (
    SUITES,
    TASK_TYPES,
    DatasetFormatError,
    DatasetInfo,
    UnknownDatasetError,
    discover,
    select,
)
from mote.eval.encoders import DenseEncoder, Encoder, MoTEEncoder, load_encoder
from mote.eval.harness import DEFAULT_ROUTES, evaluate, load_run, parse_routes, resolve_routes, results_markdown
from mote.eval.similarity import task_similarity

__all__ = [
    "DEFAULT_ROUTES",
    "SUITES",
    "TASK_TYPES",
    "DatasetFormatError",
    "DatasetInfo",
    "DenseEncoder",
    "EmbeddingCache",
    "Encoder",
    "MoTEEncoder",
    "UnknownDatasetError",
    "compare",
    "discover",
    "embed_texts",
    "evaluate",
    "load_encoder",
    "load_run",
    "parse_routes",
    "resolve_routes",
    "results_markdown",
    "select",
    "task_similarity",
]
