"""The routed forwards plan on the host and never read a device tensor back (no per-layer host sync).

They run here on PyTorch's ``meta`` device: tensors with shapes but no data, where every host read of a tensor
(``.tolist()``, ``.item()``, ``bool(t)``, ``bincount``'s data-dependent size) raises. The attention mask is
left out because transformers' own mask helper reads it (``padding_mask.all()``), in the dense model too.
"""

from __future__ import annotations

import pytest
import torch
from tiny_train import write_tiny_model

import mote
from mote.ablations import tlr
from mote.lora import MoELoRAConfig
from mote.lora import convert as tsembed_convert

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILDERS = {
    "mote": lambda base: mote.convert(base, placement="every"),
    "tlr": lambda base: tlr.convert(base, placement="every"),
    "tsembed-token": lambda base: tsembed_convert(
        base, MoELoRAConfig(num_experts=4, r=8, routing="token", expert_compute="grouped")),
    "tsembed-sequence": lambda base: tsembed_convert(base, MoELoRAConfig(num_experts=4, r=4, routing="sequence")),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("syncs") / "bert")


# meta has grouped_mm kernels for bf16 only, so TLR / grouped MoE-LoRA run their grouped path in bf16 (in fp32 on
# meta they take the documented fallbacks; CPU fp32 has the kernel: tests/test_tlr.py)
CASES = [("mote", torch.float32), ("mote", torch.bfloat16), ("tlr", torch.bfloat16),
         ("tsembed-token", torch.float32), ("tsembed-token", torch.bfloat16), ("tsembed-sequence", torch.float32)]


@pytest.mark.parametrize("kind,dtype", CASES, ids=[f"{k}-{str(d).split('.')[-1]}" for k, d in CASES])
@pytest.mark.parametrize("tasks", ["query", ["query", "document", "query"]], ids=["one-task", "mixed"])
def test_routed_forward_reads_no_device_tensor(base, kind, tasks, dtype):
    model = BUILDERS[kind](base)
    module = model[0]
    features = module.preprocess(["hello world", "a longer text, here", "ok ok ok"], task=tasks)
    model.to(device="meta", dtype=dtype).eval()
    features = {k: v.to("meta") if isinstance(v, torch.Tensor) else v
                for k, v in features.items() if k != "attention_mask"}
    with torch.no_grad():
        out = model(features)
    assert out["sentence_embedding"].shape == (3, 32) and out["sentence_embedding"].device.type == "meta"
