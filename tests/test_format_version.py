"""Issue 29: every model folder mote saves (MoTE, TLR, TSEmbed) records ``format_version`` in its module config.

A folder recorded by a newer mote is refused with one error naming the folder, what it is and the fix (through the
CLI as one line); a folder without the field (saved before it was recorded) is format 1 and loads.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tiny_train import write_tiny_model

import mote
import mote.lora as tl
from mote.ablations import tlr
from mote.cli import main
from mote.files import FORMAT_VERSION, ModelFolderError

TEXTS = ["how do magnets work", "a b c"]
KINDS = {  # kind -> (its module config, how the library loads the folder)
    "MoTE": ("mote_config.json", mote.load),
    "TLR": ("mote_config.json", mote.load),
    "TSEmbed": ("tsembed_config.json", tl.load),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A freshly saved folder of each kind, and what it encodes."""
    root = tmp_path_factory.mktemp("format")
    base = write_tiny_model(root / "bert", dropout=0.0)
    models = {"MoTE": mote.convert(base, placement="1"), "TLR": tlr.convert(base, placement="1"),
              "TSEmbed": tl.convert(base, tl.MoELoRAConfig(num_experts=4, r=2))}
    for kind, model in models.items():
        model.save(str(root / kind))
    return root, {kind: model.encode(TEXTS, task="query") for kind, model in models.items()}


def _copy(saved, kind, tmp_path, **changes):
    """A copy of the saved ``kind`` folder with its module config's fields changed (None: the field removed)."""
    root, _ = saved
    folder = tmp_path / kind
    shutil.copytree(root / kind, folder)
    file = folder / KINDS[kind][0]
    config = json.loads(file.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    file.write_text(json.dumps(config))
    return folder


def test_the_current_format_is_one():
    assert FORMAT_VERSION == 1  # raising it is a decision: old mote versions then refuse the new folders


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_fresh_folder_records_the_current_format_and_loads(saved, kind):
    root, expected = saved
    config_name, load = KINDS[kind]
    assert json.loads((root / kind / config_name).read_text())["format_version"] == FORMAT_VERSION
    np.testing.assert_allclose(load(root / kind).encode(TEXTS, task="query"), expected[kind], atol=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_folder_without_the_field_is_format_one_and_loads(saved, kind, tmp_path):
    folder = _copy(saved, kind, tmp_path, format_version=None)
    assert "format_version" not in json.loads((folder / KINDS[kind][0]).read_text())
    np.testing.assert_allclose(KINDS[kind][1](folder).encode(TEXTS, task="query"), saved[1][kind], atol=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_folder_of_a_newer_format_is_refused_with_the_fix(saved, kind, tmp_path, capsys):
    newer = FORMAT_VERSION + 1
    folder = _copy(saved, kind, tmp_path, format_version=newer)
    with pytest.raises(ModelFolderError) as e:
        KINDS[kind][1](folder)
    message = str(e.value)
    assert str(folder) in message and KINDS[kind][0] in message
    assert f"this {kind} model folder was saved by a newer mote (format {newer}" in message
    assert "upgrade mote" in message
    capsys.readouterr()
    assert main(["info", str(folder)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"  # the CLI: the same error, one line


@pytest.mark.parametrize("value", ["1", 0, 1.0, True])
def test_a_damaged_format_version_names_the_field(saved, value, tmp_path):
    folder = _copy(saved, "TSEmbed", tmp_path, format_version=value)
    with pytest.raises(ModelFolderError, match=r"tsembed_config.json: format_version must be a whole number >= 1"):
        tl.load(folder)
