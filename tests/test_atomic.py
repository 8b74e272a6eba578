"""Nothing half-written, nothing lost: every save is killed at each of its steps and what is left is checked.

``atomic_dir`` (the folder primitive) is SIGKILLed in a child process before each of its file-system calls, in
both of its modes (atomic exchange, and the two-rename fallback); model saves and training checkpoints are
interrupted in-process (an exception before the k-th rename: what a kill leaves on disk, but for the removal of
the staging folder, which a kill would leave and the next save removes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mote
from mote import atomic
from mote.atomic import atomic_dir, recover_dir, staged_files

ATOMIC_FILE = Path(atomic.__file__)

CHILD = textwrap.dedent(
    """
    import importlib.util, os, shutil, signal, sys
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("mote_atomic", sys.argv[1])
    atomic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic)
    target, mode, kill_at = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    calls = [0]

    def killer(fn):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind
            return fn(*args, **kwargs)
        return wrapped

    os.replace = killer(os.replace)
    shutil.rmtree = killer(shutil.rmtree)
    atomic.fsync_tree = killer(atomic.fsync_tree)
    atomic._exchange = killer(atomic._exchange if mode == "exchange" else (lambda a, b: False))
    with atomic.atomic_dir(target, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
        (tmp / "b.txt").write_text("new")
    print("finished")
    """
)


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


OLD = {"a.txt": "old"}
NEW = {"a.txt": "new", "b.txt": "new"}


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_atomic_dir_killed_at_every_step_leaves_the_old_or_the_new_folder(tmp_path, mode):
    gaps = 0
    for kill_at in range(1, 20):
        root = tmp_path / f"k{kill_at}"
        target = root / "out"
        target.mkdir(parents=True)
        (target / "a.txt").write_text("old")
        child = subprocess.run([sys.executable, "-c", CHILD, str(ATOMIC_FILE), str(target), mode, str(kill_at)],
                               capture_output=True, text=True, timeout=60)
        if child.returncode == 0:
            assert "finished" in child.stdout and _contents(target) == NEW
            assert sorted(p.name for p in root.iterdir()) == ["out"]  # nothing left behind
            break
        assert child.returncode == -9, child.stderr
        if target.exists():
            assert _contents(target) in (OLD, NEW), kill_at
        else:  # only the fallback's instant between its two renames
            assert mode == "fallback", kill_at
            gaps += 1
        recover_dir(target)  # what the next atomic_dir on the target does first
        assert _contents(target) in (OLD, NEW), kill_at
        assert sorted(p.name for p in root.iterdir()) == ["out"], kill_at  # the killed writer's leftovers are gone
    else:
        pytest.fail("atomic_dir never finished")
    assert kill_at > 3  # it was killed at several steps before finishing
    assert gaps == (1 if mode == "fallback" else 0)


def test_atomic_dir_replaces_in_one_exchange_here(tmp_path):
    """This machine (Linux, ext4/tmpfs) has renameat2(RENAME_EXCHANGE): an overwrite has no instant without target."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    assert atomic._exchange(a, b)
    assert (b / "x").read_text() == "a" and not (a / "x").exists()


def test_atomic_dir_removes_stale_leftovers_of_dead_writers(tmp_path):
    target = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    for name in (f".out.tmp-{pid}-abc", f".out.old-{pid}", ".out.tmp-xyz"):  # the last: made by an older mote
        (tmp_path / name).mkdir()
    (tmp_path / f".out.tmp-{os.getpid()}-mine").mkdir()  # a live writer's (this process): kept
    target.mkdir()  # (a missing target would get its old copy back instead: the next test)
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".out.tmp-{os.getpid()}-mine", "out"]


def test_atomic_dir_restores_the_old_folder_a_kill_left_aside(tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    old = tmp_path / f".out.old-{dead}"
    old.mkdir()
    (old / "a.txt").write_text("old")
    with pytest.raises(FileExistsError), atomic_dir(tmp_path / "out"):  # restored: no silent overwrite
        pass
    assert _contents(tmp_path / "out") == OLD


class Killed(BaseException):
    """Stands for a SIGKILL at that instant (BaseException: nothing catches it as an error)."""


def kill_at_replace(monkeypatch, k: int) -> list[int]:
    """Make the ``k``-th ``os.replace`` from now raise :class:`Killed` before it renames anything."""
    calls = [0]
    original = os.replace

    def replace(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            raise Killed(k)
        return original(*args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_staged_files_never_leave_a_torn_file(tmp_path, monkeypatch):
    target = tmp_path / "folder"
    with staged_files(target) as tmp:
        for name in ("w.bin", "config.json"):
            (tmp / name).write_text("old " + name)
    for k in (1, 2):
        kill_at_replace(monkeypatch, k)
        with pytest.raises(Killed), staged_files(target, last=("config.json",)) as tmp:
            for name in ("w.bin", "config.json"):
                (tmp / name).write_text("new " + name)
        monkeypatch.undo()
        got = _contents(target)
        assert set(got) == {"w.bin", "config.json"}
        assert got["config.json"] == "old config.json"  # the config is published last
        assert got["w.bin"] == ("new w.bin" if k == 2 else "old w.bin")


def test_a_model_save_killed_at_any_rename_never_loads_silently_wrong(tiny_bert, tmp_path, monkeypatch):
    """model.save(path) over an older save, interrupted before each rename: load gives the old model, the new one,
    or an error that names the interrupted save; never a mix of the two."""
    from test_experts import perturb_expert

    old, new = mote.convert(tiny_bert, placement="every"), mote.convert(tiny_bert, placement="every")
    perturb_expert(new, 0, scale=0.5)
    texts = ["how do magnets work", "a second text"]
    want = {name: m.encode(texts, task="query") for name, m in (("old", old), ("new", new))}
    outcomes = set()
    for k in range(1, 30):
        path = tmp_path / f"k{k}"
        old.save(str(path))
        calls = kill_at_replace(monkeypatch, k)
        try:
            new.save(str(path))
            finished = True
        except Killed:
            finished = False
        monkeypatch.undo()
        try:
            got = mote.load(path).encode(texts, task="query")
        except mote.NotAMoTEModelError as e:
            assert "different saves" in str(e) and "save (or copy) the model again" in str(e)
            outcomes.add("refused")
        else:
            match = [n for n, w in want.items() if np.abs(got - w).max() <= 1e-6]
            assert match, k
            outcomes.add(match[0])
        if finished:
            assert calls[0] < k and match == ["new"]
            break
    assert outcomes == {"old", "refused", "new"}
