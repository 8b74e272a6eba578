"""Issue 27: a seeded, bounded fuzz of model-folder loading. Random damage to a tiny saved MoTE folder (its config
files and its weights) gives :class:`mote.ModelFolderError` naming a file and the fix, or a model that encodes
exactly as the undamaged one: never another exception, never a silently different model.

Damage is what disks, copies and kills do: any of the folder's files truncated, overwritten with garbage, bytes
flipped, deleted; and in the configs mote writes (``mote_config.json``, ``config.json``) a value of the wrong type
or out of range, or a key missing. (An edit that is a valid, different configuration, e.g. another task prefix or
pooling mode, is a change, not damage.)
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_train import write_tiny_model

import mote
from mote.files import ModelFolderError

SEED, CASES = 2027, 60
TEXTS = ["how do magnets work", "a b c", "Magnets attract iron because of aligned domains."]
BAD_VALUES = [None, "x", "1", -1, 0, 1.5, True, [], {}, [99], [0, 0], 10**6, {"tasks": []}]
FIXES = ("save (or copy) the model again", "mote convert", "refusing", "upgrade mote")
MOTE_CONFIGS = ("mote_config.json", "config.json")
MOTE_FILES = ["mote_config.json", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "modules.json", "config_sentence_transformers.json", "1_Pooling/config.json"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    model = mote.convert(write_tiny_model(root / "base", dropout=0.0), placement="0")
    folder = root / "mote"
    model.save(str(folder))
    reference = {t: mote.load(folder).encode(TEXTS, task=t) for t in ("query", "clustering")}
    return folder, reference


def damage(folder: Path, rng: random.Random) -> str:
    """Apply one random kind of damage to one file of ``folder``; returns what was done (for the failure report)."""
    name = rng.choice(MOTE_FILES)
    path = folder / name
    data = path.read_bytes()
    kinds = ["truncate", "garbage", "flip", "delete"]
    if name in MOTE_CONFIGS:  # the configs mote writes and validates value by value
        kinds += ["json-value", "json-drop"]
    kind = rng.choice(kinds)
    if kind == "truncate":
        path.write_bytes(data[: rng.randrange(len(data))])
    elif kind == "garbage":
        path.write_bytes(rng.randbytes(rng.randrange(1, 64)))
    elif kind == "flip":
        raw = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(raw))
            raw[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
    elif kind == "delete":
        path.unlink()
    else:
        obj = json.loads(data)
        key = rng.choice(sorted(obj))
        if kind == "json-drop":
            del obj[key]
        else:
            obj[key] = rng.choice(BAD_VALUES)
        path.write_text(json.dumps(obj))
        return f"{name}: {kind} {key!r}"
    return f"{name}: {kind}"


def test_damaged_folders_raise_only_model_folder_error(saved, tmp_path):
    folder, reference = saved
    rng = random.Random(SEED)
    outcomes = {"refused": 0, "same": 0}
    for case in range(CASES):
        copy = Path(shutil.copytree(folder, tmp_path / f"case{case}"))
        what = damage(copy, rng)
        try:
            model = mote.load(copy)
        except ModelFolderError as e:
            assert str(copy) in str(e), (what, str(e))  # names the folder (and mostly the file)
            assert any(fix in str(e) for fix in FIXES), (what, str(e))  # and the fix
            outcomes["refused"] += 1
        except Exception as e:  # the point of the test: no other exception type
            pytest.fail(f"case {case} ({what}): {type(e).__name__}: {e}")
        else:
            for task, want in reference.items():
                got = model.encode(TEXTS, task=task)
                assert np.array_equal(got, want), f"case {case} ({what}): loaded a different model"
            outcomes["same"] += 1
        shutil.rmtree(copy)
    assert outcomes["refused"] >= CASES // 2, outcomes  # most damage is refused, none of it passes as a new model
