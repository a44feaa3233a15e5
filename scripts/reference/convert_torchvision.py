"""torchvision checkpoint (.pth) -> the safetensors file `scmpl train ... --init` loads.

Keeps the encoder's tensors under their torchvision names (conv1.weight, layer1.0.bn1.*,
features.1.0.block.0.0.weight, ...), drops the ImageNet classifier (fc.* / classifier.*) and
BatchNorm's num_batches_tracked, and checks the result against the torchvision architecture
named by --backbone (every encoder tensor present, right shapes) before writing.
"""

import argparse
import sys

import torch
import torchvision
from safetensors.torch import save_file

BACKBONES = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "efficientnet_b0": torchvision.models.efficientnet_b0,
}


def encoder_tensors(state):
    out = {}
    for name, t in state.items():
        name = name.removeprefix("module.")
        if name.startswith(("fc.", "classifier.")) or name.endswith("num_batches_tracked"):
            continue
        out[name] = t.detach().to(torch.float32).contiguous()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="torchvision .pth (a state_dict, or a dict holding one under 'state_dict' or 'model')")
    ap.add_argument("out", help="output .safetensors")
    ap.add_argument("--backbone", required=True, choices=sorted(BACKBONES))
    a = ap.parse_args()
    state = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = encoder_tensors(state)
    expected = encoder_tensors(BACKBONES[a.backbone]().state_dict())
    missing = sorted(set(expected) - set(tensors))
    wrong = sorted(k for k in expected if k in tensors and tensors[k].shape != expected[k].shape)
    if missing or wrong:
        sys.exit(f"{a.checkpoint}: not a torchvision {a.backbone}: missing {missing[:8]}, wrong shape {wrong[:8]}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        print(f"ignoring {len(extra)} tensors not in {a.backbone}: {extra[:5]}", file=sys.stderr)
    save_file({k: tensors[k] for k in expected}, a.out)
    print(f"{a.out}: {len(expected)} {a.backbone} encoder tensors")


if __name__ == "__main__":
    main()
