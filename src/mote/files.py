"""Readers of the files mote reads (weights, configs, JSONL data, texts, YAML recipes) and its append-only logs.

Every reader fails with an error that names the file (and line) and the fix: a missing, truncated or damaged file
never passes silently. :func:`read_log` drops the torn last line a killed append leaves.

Example:
    >>> from mote.files import read_texts
    >>> read_texts("queries.txt")   # doctest: +SKIP
    ['how do magnets work', ...]
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mote.atomic import SAVE_ID

logger = logging.getLogger(__name__)


class ModelFolderError(ValueError):
    """A model folder that cannot be loaded as it is: a file missing, unreadable or damaged, a config that
    contradicts another one or the weights, a folder of another kind, or one saved by another version of mote (see
    :data:`FORMAT_VERSION`). The message names the file and the fix."""


FORMAT_VERSION = 1
"""The format of the model folders this mote writes and reads (MoTE and TLR: ``mote_config.json``; TSEmbed:
``tsembed_config.json``), recorded there as ``format_version``. A config without the field is format 1 (folders
saved before it was recorded); a higher one was saved by a newer mote and is refused (:func:`check_format_version`).
Raise it when a saved folder of the new code would not load correctly in the old code."""

# The folders and files of a `mote train` run (what training writes, and what selection and the snapshot loader
# read): RUN/model (the model to use), RUN/trained (the raw final weights of a run that selects),
# RUN/snapshots/step-N/ (weight snapshots: the encoder's weights and snapshot.json), and selection.json in a
# selected model folder. Named once here, at the bottom of the layers, for every module that opens a run.
RUN_MODEL = "model"
RUN_TRAINED = "trained"
SNAPSHOTS = "snapshots"
SNAPSHOT_WEIGHTS = "model.safetensors"
SNAPSHOT_META = "snapshot.json"
SELECTION_FILE = "selection.json"

# modules.json class paths that mote no longer provides -> the path of the same class now. A folder naming one is
# refused with the fix (check_class_paths) rather than failing inside sentence-transformers' import of the path.
REMOVED_CLASS_PATHS: dict[str, str] = {
    "mote.tlr.TLRTransformer": "mote.ablations.tlr.TLRTransformer",  # moved 2026-12-01, old name removed 2026-12-07
}


def check_format_version(config: dict, where: str | os.PathLike, kind: str,
                         error: type[Exception] = ModelFolderError) -> int:
    """The ``format_version`` of a module config read from ``where`` (1 when absent), or ``error`` naming the file
    and the fix: not a whole number >= 1 (damage), or newer than :data:`FORMAT_VERSION` (saved by a newer mote)."""
    version = config.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise error(f"{where}: format_version must be a whole number >= 1, got {version!r}; the file is damaged or "
                    "edited by hand: save (or copy) the model again")
    if version > FORMAT_VERSION:
        raise error(f"{where}: this {kind} model folder was saved by a newer mote (format {version}; this mote reads "
                    f"format {FORMAT_VERSION}): upgrade mote to load it (pip install --upgrade mote)")
    return version


def check_class_paths(folder: str | os.PathLike, types: list[str], error: type[Exception] = ModelFolderError) -> None:
    """``error`` naming the folder and the fix if its ``modules.json`` ``types`` name a class path mote no longer
    provides (:data:`REMOVED_CLASS_PATHS`)."""
    for old in types:
        if old in REMOVED_CLASS_PATHS:
            raise error(removed_class_path_message(old, folder))


def removed_class_path_message(old: str, folder: str | os.PathLike | None = None) -> str:
    """What a folder naming the removed class path ``old`` is and how to fix it (``folder``: where, if known)."""
    new = REMOVED_CLASS_PATHS[old]
    where = f"{folder} was" if folder is not None else "this model folder was"
    file = Path(folder) / "modules.json" if folder is not None else "its modules.json"
    return (f"{where} saved by mote before 2026-12 (its modules.json names the class path {old}, which mote no "
            f"longer provides): edit {file} to change the type {old!r} to {new!r} (the files are otherwise the "
            "same), or load it with a mote of 2026-12-01 to 2026-12-06 (which reads both paths) and save it again")


def safetensors_header(path: str | os.PathLike, error: type[Exception] = ModelFolderError
                       ) -> tuple[dict[str, list[int]], dict[str, str]]:
    """``({tensor name: shape}, metadata)`` from the header of the safetensors file ``path``, read without loading
    a tensor; ``error`` names the file if it is missing or its header is damaged."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise error(f"{path} is missing: the model folder is incomplete; save (or copy) the model again")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path} is not a readable safetensors file ({e}): truncated or damaged; save (or copy) the "
                    "model again") from None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in chunks (a model's weights carry it in their config)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_safetensors(path: str | os.PathLike, error: type[Exception], config: str | os.PathLike | None = None,
                     save_id: str | None = None) -> dict[str, Any]:
    """The tensors of the safetensors file ``path``; ``error`` names the file and the fix if it is missing,
    unreadable (truncated, damaged), or (``save_id`` given) not written by the same save as ``config``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    fix = "save (or copy) the model again"
    if not path.is_file():
        raise error(f"{path} is missing: the model folder is incomplete; {fix}")
    try:
        if save_id is not None:
            with safe_open(str(path), "pt") as f:
                found = (f.metadata() or {}).get(SAVE_ID)
            if found != save_id:
                raise error(f"{path} and {config} come from different saves (an interrupted save?); {fix}")
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise error(f"{path} is not a readable safetensors file ({e}): truncated or damaged; {fix}") from None


def read_json_config(path: str | os.PathLike, error: type[Exception], required: tuple[str, ...] = ()) -> dict:
    """The JSON object in ``path`` with every ``required`` key, or ``error`` naming the file and the fix."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is not readable JSON ({e}): the folder is damaged; save (or copy) the model again") \
            from None
    if not isinstance(data, dict):
        raise error(f"{path} holds a {type(data).__name__}, not a JSON object: save (or copy) the model again")
    missing = [k for k in required if k not in data]
    if missing:
        raise error(f"{path} lacks {missing}: it is damaged or not written by mote; save (or copy) the model again")
    return data


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


def read_log(path: str | os.PathLike, repair: bool = False) -> list[dict[str, Any]]:
    """The entries of an append-only JSONL log (``metrics.jsonl``, ``timings.jsonl``); ``[]`` if it is missing.

    A process killed mid-append leaves a torn last line: it is dropped with a warning naming the file, and with
    ``repair`` cut from the file too (so that the next append starts on a fresh line). A bad line anywhere else is
    damage, not a torn write: ``ValueError`` naming ``path:line``.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    entries: list[dict[str, Any]] = []
    offset = 0
    for lineno, raw in enumerate(lines, 1):
        last = lineno == len(lines) or all(not rest.strip() for rest in lines[lineno:])
        if raw.strip():
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as e:
                if not last:
                    raise ValueError(f"{path}:{lineno}: not a JSON object ({e}); the log is damaged") from None
                logger.warning("%s: dropping its torn last line %d (a write interrupted by a kill)%s", path, lineno,
                               "; removed from the file" if repair else "")
                if repair:
                    os.truncate(path, offset)
                return entries
            entries.append(entry)
        offset += len(raw) + 1
    if repair and data and not data.endswith(b"\n"):  # a complete last entry without its newline
        with open(path, "ab") as f:
            f.write(b"\n")
    return entries


def append_log(path: str | os.PathLike, entry: dict[str, Any]) -> None:
    """Append one entry to a JSONL log as a single write of one line (flushed)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


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
        try:
            with open_text(path) as f:
                texts = [line.rstrip("\n") for line in f if line.strip()]
        except (UnicodeDecodeError, EOFError, OSError) as e:
            raise ValueError(f"{path}: not readable as UTF-8 text ({e}); save it as UTF-8 (one text per line)") \
                from None
    else:
        raise ValueError(f"Unsupported input {str(path)!r}: use .txt (one text per line) or .jsonl[.gz]")
    return texts


def read_yaml(path: str | os.PathLike, what: str, error) -> Any:
    """The parsed YAML file at ``path``; a missing file raises ``FileNotFoundError`` naming ``what`` it should be,
    invalid YAML raises ``error([message], path)`` (the config error classes of mote.train / mote_lab)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise error([f"not UTF-8 text ({e}); save the file as UTF-8"], str(path)) from None
    except yaml.YAMLError as e:
        raise error([f"not valid YAML: {e}"], str(path)) from None

__all__ = [
    "FORMAT_VERSION",
    "REMOVED_CLASS_PATHS",
    "RUN_MODEL",
    "RUN_TRAINED",
    "SELECTION_FILE",
    "SNAPSHOTS",
    "SNAPSHOT_META",
    "SNAPSHOT_WEIGHTS",
    "ModelFolderError",
    "append_log",
    "check_class_paths",
    "check_format_version",
    "file_sha256",
    "iter_jsonl",
    "open_text",
    "read_json_config",
    "read_log",
    "read_safetensors",
    "read_texts",
    "read_yaml",
    "removed_class_path_message",
    "safetensors_header",
]
