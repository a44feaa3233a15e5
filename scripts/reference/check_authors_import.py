"""Builds the authors' SupConResNet(ResNet50) + LinearClassifier (their utils.py) with random
weights and BatchNorm statistics calibrated on random batches, saves them as their main.py
does (torch.save({'model_state_dict': ...}) to .tar), converts and imports them into a scmpl
run, exports that run, and compares the exported model's fake probabilities with
`classifier(encoder.encoder(x))` on the same inputs (paper scaling: pixels / 255 / 255).
Also checks that a pickle holding a non-tensor object is refused.
  check_authors_import.py SCMPL_BINARY WORKDIR
"""
import os, subprocess, sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

scmpl, work = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(work, exist_ok=True)


class SupConResNet(nn.Module):  # the authors' utils.py, as written there
    def __init__(self, model, head="mlp", feat_dim=128):
        super().__init__()
        dim_in = model.fc.in_features
        model.fc = nn.Identity()
        self.encoder = model
        self.head = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(inplace=True), nn.Linear(dim_in, feat_dim))

    def forward(self, x):
        return F.normalize(self.head(self.encoder(x)), dim=1)


class LinearClassifier(nn.Module):
    def __init__(self, feat_dim=2048, num_classes=2):
        super().__init__()
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, features):
        return self.fc(features)


torch.manual_seed(777)
encoder, classifier = SupConResNet(torchvision.models.resnet50()), LinearClassifier()
with torch.no_grad():  # BatchNorm statistics of inputs like the paper's (/255 twice)
    encoder.train()
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    for _ in range(8):
        encoder(torch.rand(16, 3, 64, 64) / 255)
encoder.eval(), classifier.eval()
enc_tar, cls_tar = os.path.join(work, "mpl_supcon_encoder.tar"), os.path.join(work, "mpl_supcon_classifier.tar")
torch.save({"model_state_dict": encoder.state_dict()}, enc_tar)
torch.save({"model_state_dict": classifier.state_dict()}, cls_tar)

py = sys.executable
conv = os.path.join(work, "converted")
subprocess.run([py, os.path.join(here, "convert_authors.py"), enc_tar, cls_tar, conv], check=True)
run = os.path.join(work, "run")
subprocess.run([scmpl, "import", "--encoder", f"{conv}/encoder.safetensors", "--classifier", f"{conv}/classifier.safetensors", "--out", run, "--preset", "paper"], check=True)
exported = os.path.join(work, "exported")
subprocess.run([scmpl, "export", "--checkpoint", run, "--out", exported], check=True)

x = torch.rand(12, 3, 64, 64) / 255  # images in [0,1], divided by 255 again: the paper preset's inputs
with torch.no_grad():
    theirs = classifier(encoder.encoder(x)).softmax(-1)[:, 1]
    ours = torch.jit.load(os.path.join(exported, "model.pt"))(x)
diff = (theirs - ours).abs().max().item()
print(f"fake probability, authors' classifier(encoder.encoder(x)) vs scmpl import+export: max |difference| {diff:.2e} "
      f"over {len(x)} inputs (probabilities {theirs.min().item():.4f}..{theirs.max().item():.4f})")
assert diff < 1e-4, diff

# A pickle holding an object that is not a tensor is refused.
class Evil:
    pass

evil = os.path.join(work, "evil.tar")
torch.save({"model_state_dict": encoder.state_dict(), "extra": Evil()}, evil)
r = subprocess.run([py, os.path.join(here, "convert_authors.py"), evil, cls_tar, os.path.join(work, "no")], capture_output=True, text=True)
assert r.returncode != 0 and "refused" in r.stderr, r.stderr
print("a pickle holding a non-tensor object: refused:", r.stderr.strip().splitlines()[-1][:140])
