"""Trainer callbacks: progress bar, metrics log (JSONL + CSV), periodic quick evaluation, Ctrl-C checkpointing.

All are ``transformers.TrainerCallback`` s; they act on the main process only, except :class:`GracefulInterrupt`
whose decision every DDP process must share.

Example:
    >>> trainer.add_callback(MetricsLogger("runs/x", examples_per_step=32))   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from mote.atomic import atomic_write_json, atomic_write_text
from mote.files import append_log, read_log

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("step", "epoch", "loss", "info_nce", "load_balance", "learning_rate", "grad_norm", "examples_per_s",
               "elapsed_s")


class _Throughput:
    """Examples per second since this process started training (resumes start their own clock)."""

    def __init__(self, examples_per_step: int) -> None:
        self.examples_per_step = examples_per_step
        self.t0 = time.perf_counter()
        self.step0 = 0

    def start(self, step: int) -> None:
        self.t0, self.step0 = time.perf_counter(), step

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def rate(self, step: int) -> float:
        dt = self.elapsed()
        return (step - self.step0) * self.examples_per_step / dt if dt > 0 else 0.0


class MetricsLogger(TrainerCallback):
    """Append every log (loss, learning rate, gradient norm, examples/s, eval scores) to ``metrics.jsonl`` and
    the core columns to ``metrics.csv``. On resume, entries after the checkpoint's step are dropped first, so the
    files read like one uninterrupted run.

    A later training stage (TSEmbed) logs into the same files with ``step_offset`` (the steps of the stages before
    it) added to its own step numbers, and ``tags`` (e.g. ``{"stage": "stage2"}``) added to every JSONL entry.
    """

    def __init__(
        self, output_dir: str | Path, examples_per_step: int, step_offset: int = 0, tags: dict | None = None
    ) -> None:
        self.dir = Path(output_dir)
        self.jsonl, self.csv = self.dir / "metrics.jsonl", self.dir / "metrics.csv"
        self.clock = _Throughput(examples_per_step)
        self.step_offset = int(step_offset)
        self.tags = dict(tags or {})

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.start(state.global_step)
        if not state.is_world_process_zero:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._truncate(self.step_offset + state.global_step)

    def _truncate(self, step: int) -> None:
        """Drop the entries after ``step`` (a resumed run's logs read like one run), and a torn last line."""
        if self.jsonl.is_file():
            keep = [e for e in read_log(self.jsonl, repair=True) if e["step"] <= step]
            atomic_write_text(self.jsonl, "".join(json.dumps(e) + "\n" for e in keep))
        if self.csv.is_file():
            text = self.csv.read_text(encoding="utf-8")
            rows = list(csv.DictReader(text.splitlines()))
            if rows and not text.endswith("\n"):  # every row is written with its line end: this one was cut
                logger.warning("%s: dropping its torn last row (a write interrupted by a kill)", self.csv)
                rows = rows[:-1]
            self._write_csv([r for r in rows if int(r["step"]) <= step], mode="w")

    def _write_csv(self, rows: list[dict[str, Any]], mode: str = "a") -> None:
        new = mode == "w" or not self.csv.is_file()
        with open(self.csv, mode if not new else "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def record(self, state, entry: dict[str, Any]) -> None:
        """Append one entry (also used by :class:`QuickEvaluation`)."""
        if not state.is_world_process_zero:
            return
        entry = {"step": self.step_offset + state.global_step, **self.tags, **entry}
        append_log(self.jsonl, entry)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        entry = {
            "step": self.step_offset + state.global_step,
            **self.tags,
            "epoch": round(state.epoch or 0.0, 4),
            **{k: v for k, v in logs.items() if isinstance(v, int | float)},
            "examples_per_s": round(self.clock.rate(state.global_step), 2),
            "elapsed_s": round(self.clock.elapsed(), 2),
        }
        append_log(self.jsonl, entry)
        if "loss" in logs:
            self._write_csv([entry])


class ProgressBar(TrainerCallback):
    """A tqdm bar over optimisation steps with the latest loss, learning rate and examples/s."""

    def __init__(self, examples_per_step: int, desc: str = "train") -> None:
        self.clock = _Throughput(examples_per_step)
        self.desc = desc
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step",
                            dynamic_ncols=True)
            self.clock.start(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(
                loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}",
                ex_s=f"{self.clock.rate(state.global_step):.1f}",
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def flatten_scores(result: Any, prefix: str = "") -> dict[str, float]:
    """Numbers of an evaluation result (mapping, dataclass, ``to_dict()``-able) as ``{"a/b": x}``."""
    if hasattr(result, "to_dict") and callable(result.to_dict):
        result = result.to_dict()
    elif hasattr(result, "__dataclass_fields__"):
        from dataclasses import asdict

        result = asdict(result)
    out: dict[str, float] = {}
    if isinstance(result, dict):
        for k, v in result.items():
            out.update(flatten_scores(v, f"{prefix}{k}/"))
    elif isinstance(result, list | tuple):
        for i, v in enumerate(result):
            out.update(flatten_scores(v, f"{prefix}{i}/"))
    elif isinstance(result, int | float) and not isinstance(result, bool) and math.isfinite(result):
        out[prefix.rstrip("/")] = float(result)
    return out


def quick_evaluator(suite: str = "quick", **options) -> Callable[[Any, str], Any] | None:
    """``fn(model, name) -> result`` running ``mote.eval.evaluate`` on a loaded model, or ``None`` if the
    evaluation harness is not installed (``mote.eval.evaluate`` / ``mote.eval.encoders.load_encoder``)."""
    try:
        from mote.eval import evaluate  # type: ignore[attr-defined]
        from mote.eval.encoders import load_encoder
    except ImportError:
        return None

    def run(model, name: str, dense_prefixes: dict[str, str] | None = None):
        if dense_prefixes is not None:
            from mote.routing import RoutingTable

            encoder = load_encoder(model, mode="ic", routing=RoutingTable.from_prefixes(dense_prefixes), name=name)
        else:
            encoder = load_encoder(model, mode="auto", name=name)
        # quiet, and no embedding cache: every evaluation during training sees new weights
        return evaluate(encoder, **{"suite": suite, "show_progress": False, "quiet": True, "cache": False, **options})

    return run


class QuickEvaluation(TrainerCallback):
    """Evaluate with the harness's quick suite every ``every`` steps (and/or at the end), main process only.

    Results go to ``<output>/eval/step-<N>.json`` and into the metrics log. If the harness is not importable the
    callback logs that once and does nothing.
    """

    def __init__(
        self,
        output_dir: str | Path,
        every: int = 0,
        at_end: bool = False,
        suite: str = "quick",
        options: dict[str, Any] | None = None,
        name: str = "model",
        dense_prefixes: dict[str, str] | None = None,
        metrics: MetricsLogger | None = None,
        step_offset: int = 0,
    ) -> None:
        self.dir = Path(output_dir) / "eval"
        self.step_offset = int(step_offset)
        self.every, self.at_end = every, at_end
        self.name, self.dense_prefixes, self.metrics = name, dense_prefixes, metrics
        self.runner = quick_evaluator(suite, **(options or {}))
        self.last_step = -1
        if self.runner is None and (every or at_end):
            logger.warning("mote.eval.evaluate is not available: periodic evaluation is off")

    def _run(self, state, model) -> None:
        if self.runner is None or not state.is_world_process_zero or state.global_step == self.last_step:
            return
        self.last_step = state.global_step
        step = self.step_offset + state.global_step
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                result = self.runner(model, f"{self.name}@{step}", self.dense_prefixes)
        finally:
            model.train(was_training)
        scores = flatten_scores(result)
        atomic_write_json(self.dir / f"step-{step}.json", {"step": step, "scores": scores})
        if self.metrics is not None:
            self.metrics.record(state, {"eval": scores})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and (self.step_offset + state.global_step) % self.every == 0:
            self._run(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_end:
            self._run(state, model)


class GracefulInterrupt(TrainerCallback):
    """Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a checkpoint and stops; a second one aborts.

    SIGTERM is what ``torchrun`` sends its workers on Ctrl-C (and what job schedulers send before preemption).
    Under DDP every process gets the signal, maybe at different steps: the flag is all-reduced at each step end
    so that all processes stop (and save) after the same step.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.interrupted = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: finishing this step and saving a checkpoint (again to abort)", flush=True)

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}

    def on_step_end(self, args, state, control, **kwargs):
        flag = self.requested
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor([1.0 if flag else 0.0], device=args.device)
            dist.all_reduce(t)
            flag = bool(t.item() > 0)
        if flag:
            self.interrupted = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous and threading.current_thread() is threading.main_thread():
            self._restore()
