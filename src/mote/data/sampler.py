"""TA-CL batch samplers: which rows form each batch, as a pure function of ``(seed, epoch)``.

The training data is a list of *batch groups* (the entries of the trainer's ``DatasetDict``, concatenated in
order): a retrieval dataset is a group of its own (homogeneous batches), a classification or clustering task is
one group holding all its datasets (heterogeneous batches). Each batch is drawn from one group, so it holds one
task. Which task comes next:

* ``proportional``: with probability proportional to the task's number of pairs;
* ``temperature``: proportional to ``pairs ** (1 / T)`` (``T > 1`` flattens towards uniform, ``T = 1`` is
  proportional);
* ``round-robin``: tasks in turn.

Within a task, the group (dataset) is drawn proportionally to its size (``temperature``: ``size ** (1 / T)``).
Each group is read in a shuffled order, reshuffled when used up; an epoch is ``sum(size // batch_size)`` batches.

:class:`MixedBatchSampler` is the ``static`` baseline: all groups pooled and shuffled, batches mix tasks.

Both extend sentence-transformers' :class:`~sentence_transformers.base.sampler.MultiDatasetDefaultBatchSampler`
(the trainer's hook for multi-dataset batching); everything they draw comes from a generator seeded with
``(seed, epoch)``, so a resumed run that skips the first ``k`` batches of an epoch sees exactly the batches an
uninterrupted run sees.

Example:
    >>> batches = list(task_batches([6, 4, 8], ["a", "a", "b"], batch_size=2, seed=0, epoch=0))
    >>> len(batches), all(len(b) == 2 for b in batches)
    (9, True)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Literal

import numpy as np
import torch
from sentence_transformers.base.sampler import MultiDatasetDefaultBatchSampler
from torch.utils.data import BatchSampler, ConcatDataset

Strategy = Literal["proportional", "temperature", "round-robin"]
STRATEGIES: tuple[str, ...] = ("proportional", "temperature", "round-robin")


def _weights(sizes: Sequence[int], strategy: str, temperature: float) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.float64)
    w = sizes ** (1.0 / temperature) if strategy == "temperature" else sizes.copy()
    return w / w.sum()


def task_probabilities(
    task_sizes: dict[str, int], strategy: Strategy = "proportional", temperature: float = 1.0
) -> dict[str, float]:
    """The probability of each task per batch (round-robin: the long-run share, uniform).

    Example:
        >>> task_probabilities({"a": 100, "b": 25}, "temperature", 2.0)
        {'a': 0.6666666666666666, 'b': 0.3333333333333333}
    """
    names = list(task_sizes)
    if strategy == "round-robin":
        return {n: 1.0 / len(names) for n in names}
    return dict(zip(names, _weights([task_sizes[n] for n in names], strategy, temperature).tolist()))


class _Stream:
    """A group's rows in shuffled order, reshuffled when fewer than a batch remain."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.order = rng.permutation(size)
        self.pos = 0

    def take(self, n: int) -> list[int]:
        if self.pos + n > self.size:
            self.order, self.pos = self.rng.permutation(self.size), 0
        out = self.order[self.pos : self.pos + n]
        self.pos += n
        return out.tolist()


def epoch_length(sizes: Sequence[int], batch_size: int) -> int:
    return sum(s // batch_size for s in sizes)


def task_batches(
    sizes: Sequence[int],
    tasks: Sequence[str],
    batch_size: int,
    seed: int,
    epoch: int,
    strategy: Strategy = "proportional",
    temperature: float = 1.0,
) -> Iterator[list[int]]:
    """One epoch of single-task batches over groups of ``sizes`` (indices into their concatenation)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown sampling strategy {strategy!r}; use one of {STRATEGIES}")
    usable = [s >= batch_size for s in sizes]
    if not any(usable):
        raise ValueError(f"No batch group has {batch_size} rows (sizes {list(sizes)}): lower the batch size")
    offsets = [0, *accumulate(sizes)]
    rng = np.random.default_rng([seed, epoch])
    streams = [_Stream(s, rng) if ok else None for s, ok in zip(sizes, usable)]
    task_names = list(dict.fromkeys(t for t, ok in zip(tasks, usable) if ok))
    groups_of = {t: [g for g, (tt, ok) in enumerate(zip(tasks, usable)) if ok and tt == t] for t in task_names}
    task_sizes = [sum(sizes[g] for g in groups_of[t]) for t in task_names]
    p_task = _weights(task_sizes, strategy, temperature)
    p_group = {t: _weights([sizes[g] for g in groups_of[t]], strategy, temperature) for t in task_names}
    for step in range(epoch_length(sizes, batch_size)):
        if strategy == "round-robin":
            t = task_names[step % len(task_names)]
        else:
            t = task_names[int(rng.choice(len(task_names), p=p_task))]
        members = groups_of[t]
        g = members[int(rng.choice(len(members), p=p_group[t]))] if len(members) > 1 else members[0]
        yield [offsets[g] + i for i in streams[g].take(batch_size)]


def mixed_batches(sizes: Sequence[int], batch_size: int, seed: int, epoch: int) -> Iterator[list[int]]:
    """One epoch of task-mixed batches: all rows pooled and shuffled (the ``static`` baseline)."""
    total = sum(sizes)
    order = np.random.default_rng([seed, epoch]).permutation(total)
    for start in range(0, total - batch_size + 1, batch_size):
        yield order[start : start + batch_size].tolist()


class TaskBatchSampler(MultiDatasetDefaultBatchSampler):
    """TA-CL batches for the sentence-transformers trainer: one task per batch (see the module doc).

    Args:
        dataset: the trainer's ``ConcatDataset`` of batch groups.
        batch_samplers: the trainer's per-group samplers (only their batch size is used).
        group_tasks: the task of each group, in the ``ConcatDataset`` order.
        strategy, temperature: which task comes next.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        group_tasks: Sequence[str],
        strategy: Strategy = "proportional",
        temperature: float = 1.0,
    ) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        self.sizes = [len(d) for d in dataset.datasets]
        if len(group_tasks) != len(self.sizes):
            raise ValueError(f"{len(group_tasks)} group tasks for {len(self.sizes)} groups")
        self.group_tasks = list(group_tasks)
        self.strategy, self.temperature = strategy, temperature

    def __iter__(self) -> Iterator[list[int]]:
        yield from task_batches(
            self.sizes, self.group_tasks, self.batch_size, self.seed, self.epoch, self.strategy, self.temperature
        )

    def __len__(self) -> int:
        return epoch_length(self.sizes, self.batch_size)


class MixedBatchSampler(MultiDatasetDefaultBatchSampler):
    """Task-mixed batches over all groups (the ``static`` method: training without TA-CL)."""

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        self.sizes = [len(d) for d in dataset.datasets]

    def __iter__(self) -> Iterator[list[int]]:
        yield from mixed_batches(self.sizes, self.batch_size, self.seed, self.epoch)

    def __len__(self) -> int:
        return sum(self.sizes) // self.batch_size


class OffsetTaskBatchSampler(TaskBatchSampler):
    """:class:`~mote.data.sampler.TaskBatchSampler` whose epoch ``e`` holds batches ``offset + e * L ...`` of the
    uninterrupted TA-CL stream (``L`` batches an epoch, crossing into the stream's next epoch where needed).

    With ``offset = 0`` it is the plain sampler. A second training stage uses the first stage's steps as its offset,
    so the stages together consume exactly the batches one run of their total steps would.
    """

    def __init__(self, *args, offset: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self.offset = int(offset)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.offset:
            yield from super().__iter__()
            return
        n = len(self)
        if n == 0:
            return
        stream_epoch, skip = divmod(self.offset + self.epoch * n, n)
        left = n
        while left:
            for i, batch in enumerate(task_batches(self.sizes, self.group_tasks, self.batch_size, self.seed,
                                                   stream_epoch, self.strategy, self.temperature)):
                if i < skip:
                    continue
                yield batch
                left -= 1
                if not left:
                    return
            stream_epoch, skip = stream_epoch + 1, 0
