"""The authors' released weights -> two safetensors files `scmpl import` takes.

Their `supcon_encoder.tar` / `mpl_supcon_encoder.tar` hold `{'model_state_dict': ...}` of their
`SupConResNet` (`encoder.*`: a torchvision ResNet50 whose `fc` is an Identity, `head.0.*`,
`head.2.*`: the MLP head); `supcon_classifier.tar` / `mpl_supcon_classifier.tar` that of their
`LinearClassifier` (`fc.weight`, `fc.bias`) (their utils.py and main.py). The files are loaded
with `weights_only=True`: a pickle holding anything but tensors and plain containers is
refused. `module.` prefixes (DataParallel) are stripped and BatchNorm's `num_batches_tracked`
dropped; names are checked against the architecture, the differences listed.
"""

import argparse
import sys

import torch
import torchvision
from safetensors.torch import save_file

BACKBONES = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34, "resnet50": torchvision.models.resnet50}


def state_of(path):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses arbitrary objects
        sys.exit(f"{path}: refused: not a plain dict of tensors ({type(e).__name__}: {str(e).splitlines()[0]})")
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        sys.exit(f"{path}: refused: expected {{'model_state_dict': {{name: tensor}}}} as the authors save it")
    return {k.removeprefix("module."): v for k, v in obj.items() if not k.endswith("num_batches_tracked")}


def check(path, got, want):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    shape = sorted(k for k in want if k in got and got[k].shape != want[k].shape)
    if missing or extra or shape:
        sys.exit(f"{path}: not that architecture: missing {missing[:10]}, unexpected {extra[:10]}, other shape {shape[:10]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("encoder", help="supcon_encoder.tar or mpl_supcon_encoder.tar")
    ap.add_argument("classifier", help="supcon_classifier.tar or mpl_supcon_classifier.tar")
    ap.add_argument("out", help="folder for encoder.safetensors and classifier.safetensors")
    ap.add_argument("--backbone", default="resnet50", choices=sorted(BACKBONES))
    ap.add_argument("--feat-dim", type=int, default=128)
    a = ap.parse_args()
    enc, cls = state_of(a.encoder), state_of(a.classifier)
    net = BACKBONES[a.backbone]()
    dim = net.fc.in_features
    want = {f"encoder.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    want.update({"head.0.weight": torch.zeros(dim, dim), "head.0.bias": torch.zeros(dim), "head.2.weight": torch.zeros(a.feat_dim, dim), "head.2.bias": torch.zeros(a.feat_dim)})
    check(a.encoder, enc, want)
    check(a.classifier, cls, {"fc.weight": torch.zeros(2, dim), "fc.bias": torch.zeros(2)})
    import os
    os.makedirs(a.out, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in enc.items()}, os.path.join(a.out, "encoder.safetensors"))
    save_file({k: v.detach().float().contiguous() for k, v in cls.items()}, os.path.join(a.out, "classifier.safetensors"))
    print(f"{a.out}: encoder.safetensors ({len(enc)} tensors), classifier.safetensors ({len(cls)})")


if __name__ == "__main__":
    main()
