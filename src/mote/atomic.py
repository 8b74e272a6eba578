"""Crash-safe writes: nothing half-written survives an interruption (a SIGKILL at any instant included).

Folders are written aside and swapped in with one atomic rename or exchange (:func:`atomic_dir`,
:func:`replace_dir`, :func:`recover_dir` after a kill); files are written to a temp file, fsynced and renamed into
place (:func:`atomic_write_text` / ``_json`` / ``_bytes``); staged files are published last-file-last
(:func:`staged_files`, :func:`publish_files`). A save id ties a saved model's config to its weights file.

Example:
    >>> with atomic_dir("/tmp/mote-doc-example", overwrite=True) as tmp:
    ...     _ = (tmp / "a.txt").write_text("hi")
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


class OutputLockedError(OSError):
    """Another process is writing the same output (folder, file or training run): one writer at a time."""


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of an output ``target``: ``.NAME.lock`` next to it (it outlives the swaps of ``target``)."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def output_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of the output ``target`` for the block (``fcntl.flock`` on :func:`lock_path`, which
    the OS releases when the process ends, a kill included); :class:`OutputLockedError` at once if another writer
    holds it. Every writer of an output takes it: :func:`atomic_dir`, ``mote train``'s run folder.

    The lock file is removed on release (no litter next to outputs). A writer that opened it just before that
    removal finds, once it holds the lock, that the name no longer points at its file, and takes the new one.

    Example:
        >>> with output_lock("/tmp/mote-doc-example"):
        ...     pass
    """
    import fcntl

    file = lock_path(target)
    file.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"{target} is being written by another process (it holds {file}); wait for it to finish, or choose "
                "another output",
            ) from None
        held = os.fstat(fd)
        try:
            now = os.stat(file)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
            break
        os.close(fd)  # its holder removed the file we opened: lock the current one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(file)
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder next to ``target``; when the block succeeds, the folder becomes ``target`` atomically.

    Guarantee (a SIGKILL at any instant included): ``target`` is never a half-written folder. It is the complete
    old folder until the new one, fsynced, takes its place in one step. Replacing a folder (``overwrite``) is one
    atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``). Where the OS or filesystem lacks it, the old folder is
    renamed aside (``.NAME.old-PID``) only after the new one is complete, then the new one is renamed in: a kill
    between those two renames leaves no ``target`` for that instant, and the next ``atomic_dir`` on the same
    target (or :func:`recover_dir`) renames the old one back. On an exception (or Ctrl-C) in the block the temp
    folder is removed and ``target`` is left as it was; leftovers of killed writers (``.NAME.tmp-PID-*``,
    ``.NAME.old-PID``, whose process is gone) are removed on entry. One writer at a time: the block holds
    ``target``'s :func:`output_lock`, so a second writer gets :class:`OutputLockedError` (and, after the first one
    finished, ``FileExistsError`` without ``overwrite``), never a silent last-writer-wins.

    Example:
        >>> with atomic_dir("/tmp/mote-doc-example", overwrite=True) as tmp:
        ...     _ = (tmp / "a.txt").write_text("hi")
    """
    target = Path(target)
    with output_lock(target):
        recover_dir(target)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} already exists; choose another path or pass overwrite=True "
                                  "(--overwrite)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
        try:
            yield tmp
            _apply_umask(tmp)
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def replace_dir(src: str | os.PathLike, target: str | os.PathLike) -> None:
    """Make the complete folder ``src`` the folder ``target`` (same filesystem), with :func:`atomic_dir`'s
    guarantee: ``src`` is flushed to disk first; an existing ``target`` is exchanged with it in one atomic step
    (or, where the OS cannot, renamed aside as ``.NAME.old-PID`` first: :func:`recover_dir` repairs a kill between
    the two renames), then removed."""
    src, target = Path(src), Path(target)
    fsync_tree(src)
    if not target.exists():
        os.replace(src, target)
    elif _exchange(src, target):  # src now holds the old folder
        fsync_dir(target.parent)
        shutil.rmtree(src, ignore_errors=True)
    else:
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        try:
            os.replace(src, target)
        except BaseException:
            os.replace(old, target)  # put the old folder back before reporting the failure
            raise
        fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(target.parent)


def recover_dir(target: str | os.PathLike) -> None:
    """Repair what a killed :func:`atomic_dir` on ``target`` left behind: if ``target`` is missing but its old copy
    (``.NAME.old-PID``) survived, rename it back; remove temp and old folders whose writer process is gone, and a
    lock file no writer holds."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    olds = sorted(target.parent.glob(f".{glob.escape(target.name)}.old-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and olds and not _alive(olds[-1]):
        logger.warning("%s was missing after an interrupted replacement: restoring its previous copy %s",
                       target, olds[-1].name)
        os.replace(olds[-1], target)
        fsync_dir(target.parent)
    remove_stale(target.parent, f".{target.name}.tmp-")
    remove_stale(target.parent, f".{target.name}.old-")
    if lock_path(target).exists():  # a killed writer's lock file (the OS released its lock): taking it removes it
        with contextlib.suppress(OutputLockedError), output_lock(target):
            pass


def remove_stale(folder: str | os.PathLike, prefix: str) -> None:
    """Remove the entries of ``folder`` named ``prefix + PID...`` whose writer process ``PID`` is gone."""
    for leftover in Path(folder).glob(f"{glob.escape(prefix)}*"):
        if not _alive(leftover):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(leftover: Path) -> bool:
    """Whether the process that made ``.NAME.tmp-PID-xxx`` / ``.NAME.old-PID`` still runs (this one counts)."""
    found = re.findall(r"\.(?:tmp|old)-(\d+)(?=-|$)", leftover.name)
    if not found:
        return False  # no writer named (made by an older mote): stale
    pid = int(found[-1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(..., RENAME_EXCHANGE)``); ``False`` where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # no libc symbol (glibc < 2.28, musl)
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the filesystem cannot exchange: the caller renames in two steps
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (renames into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file and folder under ``folder`` to disk (before it is published by a rename)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


def publish_files(staging: str | os.PathLike, target: str | os.PathLike, last: tuple[str, ...] = ()) -> None:
    """Move every file under ``staging`` to the same place under ``target``, each in one rename once all are on
    disk (``last``: relative paths moved after all others, e.g. the config that names the weights), then remove
    ``staging``. Readers of ``target`` never see a torn file; each file is the old or the new one."""
    staging, target = Path(staging), Path(target)
    fsync_tree(staging)
    files = sorted((p.relative_to(staging) for p in staging.rglob("*") if p.is_file()),
                   key=lambda rel: (str(rel) in last, str(rel)))
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target / rel)
    for folder in {target / rel.parent for rel in files}:
        fsync_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_files(target: str | os.PathLike, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a hidden staging folder inside the folder ``target`` (created if needed); on success its files are
    published into ``target`` with :func:`publish_files`; on failure it is removed. Stale staging folders of
    killed writers are removed on entry.

    Example:
        >>> with staged_files("/tmp/mote-doc-example-files") as tmp:
        ...     _ = (tmp / "weights.bin").write_bytes(b"...")
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    remove_stale(target, ".staged.tmp-")
    tmp = Path(tempfile.mkdtemp(prefix=f".staged.tmp-{os.getpid()}-", dir=target))
    try:
        yield tmp
        _apply_umask(tmp)
        publish_files(tmp, target, last)
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


SAVE_ID = "mote_save_id"  # in a saved model's config and its safetensors metadata: both from the same save


def new_save_id() -> str:
    import uuid

    return uuid.uuid4().hex

__all__ = [
    "SAVE_ID",
    "OutputLockedError",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "fsync_tree",
    "lock_path",
    "new_save_id",
    "output_lock",
    "publish_files",
    "recover_dir",
    "remove_stale",
    "replace_dir",
    "staged_files",
]
