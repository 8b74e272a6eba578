"""Training-task kinds: how each kind of task turns rows into pairs, routes columns, batches and scores them.

A *training task* (a key under ``tasks:`` in a training config) has a kind. The kind fixes the defaults:

============== ============ ================================================ ============= =========== =========
kind           rows         columns routed to (routing-table task)           batches       temperature symmetric
============== ============ ================================================ ============= =========== =========
retrieval      pairs        anchor -> query, positive/negative -> document   homogeneous   0.03        no
classification labelled     all -> classification                            heterogeneous 0.03        no
clustering     labelled     all -> clustering                                heterogeneous 0.06        no
symmetric      pairs        all -> query                                     homogeneous   0.05        yes
============== ============ ================================================ ============= =========== =========

*Homogeneous*: a batch holds one dataset; *heterogeneous*: a batch mixes the task's datasets. Retrieval and
classification/clustering temperatures are the MoTE paper's (TA-CL); ``symmetric`` (NLI, duplicate questions,
paraphrases: both sides are the same kind of text) is this library's choice: both sides are routed as queries
(short, question- or sentence-like texts), with a symmetric loss and SimCSE's temperature 0.05.

Example:
    >>> TASK_KINDS["retrieval"].routes["positive"], TASK_KINDS["clustering"].temperature
    ('document', 0.06)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Batching = Literal["homogeneous", "heterogeneous"]
COLUMNS = ("anchor", "positive", "negative")


@dataclass(frozen=True)
class TaskKind:
    """Defaults of one kind of training task (see the module table)."""

    name: str
    pair_kind: Literal["pairs", "labelled"]
    routes: dict[str, str] = field(default_factory=dict)
    batching: Batching = "homogeneous"
    temperature: float = 0.03
    symmetric: bool = False


def _all(task: str) -> dict[str, str]:
    return {c: task for c in COLUMNS}


TASK_KINDS: dict[str, TaskKind] = {
    "retrieval": TaskKind(
        "retrieval", "pairs", {"anchor": "query", "positive": "document", "negative": "document"}, "homogeneous", 0.03
    ),
    "classification": TaskKind("classification", "labelled", _all("classification"), "heterogeneous", 0.03),
    "clustering": TaskKind("clustering", "labelled", _all("clustering"), "heterogeneous", 0.06),
    "symmetric": TaskKind("symmetric", "pairs", _all("query"), "homogeneous", 0.05, symmetric=True),
}
