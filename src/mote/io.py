"""Small I/O helpers: atomic writes (nothing half-written survives an interruption) and text-file readers."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder next to ``target``; on success it replaces ``target`` in one rename.

    On an exception (or Ctrl-C) the temp folder is removed and ``target`` is left as it was.

    Example:
        >>> with atomic_dir("/tmp/mote-doc-example", overwrite=True) as tmp:
        ...     _ = (tmp / "a.txt").write_text("hi")
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; choose another path or pass overwrite=True (--overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _apply_umask(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(folder: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600 entries; give the published files the usual umask permissions."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~mask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and ``os.replace`` (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def open_text(path: str | os.PathLike):
    """Open a text file, transparently gunzipping ``*.gz``."""
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _json_lines(path: str | os.PathLike, error: type[Exception]) -> Iterator[tuple[int, Any]]:
    """``(line number, JSON value)`` for every non-blank line; bad JSON or an unreadable file raises ``error``."""
    with open_text(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        except (OSError, EOFError, UnicodeDecodeError) as e:  # truncated gzip, bad bytes
            raise error(f"{path}: unreadable ({e})") from None


def iter_jsonl(path: str | os.PathLike, error: type[Exception] = ValueError) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSONL(.gz) file; a line that is not a JSON object,
    or an unreadable file (truncated gzip, bad bytes), raises ``error`` naming ``path:line``."""
    for lineno, obj in _json_lines(path, error):
        if not isinstance(obj, dict):
            raise error(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_texts(path: str | os.PathLike, field: str = "text") -> list[str]:
    """Texts from ``.txt`` (one per line) or ``.jsonl`` / ``.jsonl.gz`` (``field`` of each object, or a string)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Input file {str(path)!r} does not exist")
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        texts: list[str] = []
        for lineno, obj in _json_lines(path, ValueError):
            value = obj if isinstance(obj, str) else obj.get(field) if isinstance(obj, dict) else None
            if not isinstance(value, str):
                raise ValueError(f"{path}:{lineno}: expected a string or an object with a string {field!r} field")
            texts.append(value)
    elif name.endswith(".txt"):
        with open_text(path) as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    else:
        raise ValueError(f"Unsupported input {str(path)!r}: use .txt (one text per line) or .jsonl[.gz]")
    return texts


def read_yaml(path: str | os.PathLike, what: str, error) -> Any:
    """The parsed YAML file at ``path``; a missing file raises ``FileNotFoundError`` naming ``what`` it should be,
    invalid YAML raises ``error([message], path)`` (the config error classes of mote.train / mote.experiment)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise error([f"not valid YAML: {e}"], str(path)) from None
