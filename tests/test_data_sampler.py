"""TA-CL batch sampling: one task per batch, homogeneous retrieval, heterogeneous classification, strategies."""

from __future__ import annotations

from collections import Counter

import pytest

from mote.data.sampler import epoch_length, mixed_batches, task_batches, task_probabilities

SIZES = [40, 24, 64, 32]  # two retrieval datasets, one classification group, one clustering group
TASKS = ["retrieval", "retrieval", "classification", "clustering"]


def _owner(index: int) -> int:
    start = 0
    for g, size in enumerate(SIZES):
        if index < start + size:
            return g
        start += size
    raise IndexError(index)


def test_every_batch_comes_from_one_group_and_one_task():
    batches = list(task_batches(SIZES, TASKS, batch_size=8, seed=0, epoch=0))
    assert len(batches) == epoch_length(SIZES, 8) == 20
    for batch in batches:
        assert len(batch) == 8 == len(set(batch))
        assert len({_owner(i) for i in batch}) == 1  # one group (so one dataset for retrieval)
    used = Counter(_owner(b[0]) for b in batches)
    assert set(used) == {0, 1, 2, 3}


def test_deterministic_per_seed_and_epoch():
    a = list(task_batches(SIZES, TASKS, 8, seed=1, epoch=0))
    assert a == list(task_batches(SIZES, TASKS, 8, seed=1, epoch=0))
    assert a != list(task_batches(SIZES, TASKS, 8, seed=1, epoch=1))
    assert a != list(task_batches(SIZES, TASKS, 8, seed=2, epoch=0))


def test_round_robin_cycles_tasks():
    batches = list(task_batches(SIZES, TASKS, 8, seed=0, epoch=0, strategy="round-robin"))
    order = [TASKS[_owner(b[0])] for b in batches]
    assert order[:6] == ["retrieval", "classification", "clustering"] * 2


@pytest.mark.parametrize("strategy,temperature", [("proportional", 1.0), ("temperature", 4.0)])
def test_task_frequencies_follow_the_strategy(strategy, temperature):
    counts = Counter()
    for epoch in range(60):
        for b in task_batches(SIZES, TASKS, 8, seed=0, epoch=epoch, strategy=strategy, temperature=temperature):
            counts[TASKS[_owner(b[0])]] += 1
    total = sum(counts.values())
    want = task_probabilities({"retrieval": 64, "classification": 64, "clustering": 32}, strategy, temperature)
    for task, p in want.items():
        assert abs(counts[task] / total - p) < 0.03, (task, counts[task] / total, p)
    # temperature > 1 flattens: clustering's share grows from 0.2 towards 1/3
    if strategy == "temperature":
        assert want["clustering"] > 0.2


def test_mixed_batches_mix_tasks():
    batches = list(mixed_batches(SIZES, 8, seed=0, epoch=0))
    assert len(batches) == sum(SIZES) // 8
    assert any(len({TASKS[_owner(i)] for i in b}) > 1 for b in batches)


def test_groups_smaller_than_a_batch_are_skipped_or_refused():
    batches = list(task_batches([4, 16], ["a", "b"], 8, seed=0, epoch=0))
    assert batches and all(min(b) >= 4 for b in batches)
    with pytest.raises(ValueError, match="lower the batch size"):
        list(task_batches([4, 5], ["a", "b"], 8, seed=0, epoch=0))
