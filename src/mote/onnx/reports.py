"""What an ONNX export wrote and how exactly it reproduces the torch model (torch-free dataclasses).

Example:
    >>> print(export_onnx("minilm-query"))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mote.onnx.files import MIN_COSINE


@dataclass
class Int8Quality:
    """Measured quality of the dynamic int8 model against the torch model."""

    path: Path
    size_mb: float
    min_cosine: float
    mean_cosine: float
    sts_pairs: int
    spearman_fp32: float
    spearman_int8: float

    @property
    def spearman_change(self) -> float:
        return self.spearman_int8 - self.spearman_fp32

    def __str__(self) -> str:
        return (
            f"int8 (dynamic quantisation, lossy): {self.path} ({self.size_mb:.1f} MB)\n"
            f"  cosine vs torch: min {self.min_cosine:.4f}  mean {self.mean_cosine:.4f}\n"
            f"  STSBenchmark Spearman ({self.sts_pairs} pairs): fp32/torch {self.spearman_fp32:.4f} -> int8 "
            f"{self.spearman_int8:.4f} (change {self.spearman_change:+.4f})\n"
            f"  use it only if this loss is acceptable: OnnxEncoder(folder, quantized=True)"
        )


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how exactly it reproduces the torch model.

    Example:
        >>> print(export_onnx("minilm-query"))   # doctest: +SKIP
    """

    path: Path
    opset: int
    size_mb: float
    seconds: float
    texts: int
    texts_source: str
    token_lengths: tuple[int, int]
    truncated: int
    batch_sizes: tuple[int, ...]
    min_cosine: float
    mean_cosine: float
    threshold: float = MIN_COSINE
    int8: Int8Quality | None = None
    checks: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lo, hi = self.token_lengths
        lines = [
            f"ONNX export: {self.path} (opset {self.opset}, {self.size_mb:.1f} MB, {self.seconds:.1f} s)",
            f"  verified vs torch on {self.texts} {self.texts_source} texts ({lo}-{hi} tokens, {self.truncated} "
            f"truncated) in batches of {', '.join(map(str, self.batch_sizes))}, plus token-id batches of 1 token "
            f"to max length",
            f"  cosine min {self.min_cosine:.7f} (1 - {1 - self.min_cosine:.1e})  mean {self.mean_cosine:.7f}  "
            f"(export refused below {self.threshold})",
        ]
        if self.int8 is not None:
            lines.append(str(self.int8))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": str(self.path),
            "opset": self.opset,
            "size_mb": round(self.size_mb, 2),
            "seconds": round(self.seconds, 2),
            "texts": self.texts,
            "texts_source": self.texts_source,
            "token_lengths": list(self.token_lengths),
            "truncated": self.truncated,
            "batch_sizes": list(self.batch_sizes),
            "min_cosine": self.min_cosine,
            "mean_cosine": self.mean_cosine,
            "threshold": self.threshold,
            "checks": self.checks,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }
        if self.int8 is not None:
            q = self.int8
            out["int8"] = {
                "path": str(q.path),
                "size_mb": round(q.size_mb, 2),
                "min_cosine": q.min_cosine,
                "mean_cosine": q.mean_cosine,
                "sts_pairs": q.sts_pairs,
                "spearman_fp32": q.spearman_fp32,
                "spearman_int8": q.spearman_int8,
                "spearman_change": q.spearman_change,
            }
        return out


@dataclass
class MultiTaskReport:
    """What :func:`mote.onnx.export_multitask` wrote and how exactly it reproduces the torch MoTE model."""

    path: Path
    size_mb: float
    seconds: float
    tasks: list[str]
    texts: int
    texts_source: str
    token_lengths: tuple[int, int]
    truncated: int
    batch_sizes: tuple[int, ...]
    min_cosine: float
    mean_cosine: float
    threshold: float = MIN_COSINE
    checks: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lo, hi = self.token_lengths
        per_task = "  ".join(f"{k.removesuffix('_min_cosine')} {v:.7f}" for k, v in self.checks.items())
        return "\n".join(
            [
                f"Multi-task ONNX export: {self.path} ({len(self.tasks)} tasks {', '.join(self.tasks)}; "
                f"{self.size_mb:.1f} MB, {self.seconds:.1f} s)",
                f"  verified vs torch MoTE on {self.texts} {self.texts_source} texts ({lo}-{hi} tokens, "
                f"{self.truncated} truncated), all tasks mixed in batches of {', '.join(map(str, self.batch_sizes))}, "
                "every task alone in batches of 3 and 64, random token/task ids of 1 token to max length",
                f"  cosine min {self.min_cosine:.7f}  mean {self.mean_cosine:.7f}  (export refused below "
                f"{self.threshold})",
                f"  min per check: {per_task}",
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_mb": round(self.size_mb, 2),
            "seconds": round(self.seconds, 2),
            "tasks": self.tasks,
            "texts": self.texts,
            "texts_source": self.texts_source,
            "token_lengths": list(self.token_lengths),
            "truncated": self.truncated,
            "batch_sizes": list(self.batch_sizes),
            "min_cosine": self.min_cosine,
            "mean_cosine": self.mean_cosine,
            "threshold": self.threshold,
            "checks": self.checks,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }
