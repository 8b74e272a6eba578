"""Append-only logs (metrics.jsonl, timings.jsonl, metrics.csv) survive a kill mid-append: the torn last line is
dropped with a warning naming the file, repaired before the next append, and never crashes --resume or a report."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from mote.files import read_log
from mote.train.callbacks import MetricsLogger
from mote_lab.report import _timings
from mote_lab.runner import TIMINGS, _log_time

TORN = '{"step": 3, "loss": 0.5, "lear'


def _write(path, *lines, end="\n"):
    path.write_text("\n".join(lines) + end)


def test_read_log_drops_a_torn_last_line_with_a_warning_and_repairs_it(tmp_path, caplog):
    log = tmp_path / "metrics.jsonl"
    _write(log, '{"step": 1}', '{"step": 2}', TORN, end="")
    with caplog.at_level(logging.WARNING):
        assert read_log(log) == [{"step": 1}, {"step": 2}]
    assert str(log) in caplog.text and "torn last line 3" in caplog.text
    assert log.read_text().endswith(TORN)  # reading alone changes nothing
    assert read_log(log, repair=True) == [{"step": 1}, {"step": 2}]
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    _write(log, '{"step": 1}', "not json", '{"step": 3}')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: .*damaged"):  # damage in the middle is no torn write
        read_log(log)
    assert read_log(tmp_path / "missing.jsonl") == []


def test_resume_repairs_metrics_with_a_torn_last_line(tmp_path, caplog):
    _write(tmp_path / "metrics.jsonl", '{"step": 1, "loss": 1.0}', '{"step": 2, "loss": 0.9}',
           '{"step": 3, "loss": 0.8}', TORN, end="")
    (tmp_path / "metrics.csv").write_text("step,epoch,loss\n1,0.1,1.0\n2,0.2,0.9\n3,0.3,0")  # torn row too
    logger = MetricsLogger(tmp_path, examples_per_step=8)
    state = SimpleNamespace(global_step=2, is_world_process_zero=True)
    with caplog.at_level(logging.WARNING):
        logger.on_train_begin(None, state, None)  # resuming from step 2
    assert [e["step"] for e in read_log(tmp_path / "metrics.jsonl")] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1:] == ["1,0.1,1.0,,,,,,", "2,0.2,0.9,,,,,,"]
    assert "metrics.jsonl" in caplog.text and "metrics.csv" in caplog.text
    logger.on_log(None, SimpleNamespace(global_step=3, is_world_process_zero=True, epoch=0.3), None,
                  logs={"loss": 0.7})
    assert [e["step"] for e in read_log(tmp_path / "metrics.jsonl")] == [1, 2, 3]


def test_timings_with_a_torn_last_line_are_read_and_appended_to(tmp_path):
    path = tmp_path / TIMINGS
    _write(path, json.dumps({"key": "a", "kind": "train", "what": "trained", "seconds": 60.0}), TORN, end="")
    assert _timings(tmp_path) == {"train": 60.0}  # the report reads what is whole
    _log_time(tmp_path, "b", "eval", "evaluated", 30.0)  # the next append does not glue onto the torn line
    assert [e["key"] for e in read_log(path)] == ["a", "b"]
    assert _timings(tmp_path) == {"train": 60.0, "eval": 30.0}
