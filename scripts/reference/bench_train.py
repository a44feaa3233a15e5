"""PyTorch baseline of one SupCon teacher step (scripts/bench-train): torchvision ResNet
or EfficientNet without its classifier + head Linear(F,F)-ReLU-Linear(F,128) + L2 norm, SupCon (Khosla et al., L_out),
Adam; two views of BATCH random images at SIZE px. Prints images/s after warm-up."""
import sys, time
import torch, torchvision
import torch.nn as nn
import torch.nn.functional as F

from supcon_loss import supcon

backbone, batch, size, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
enc = getattr(torchvision.models, backbone)(weights=None)
if hasattr(enc, "fc"):
    dim = enc.fc.in_features
    enc.fc = nn.Identity()
else:  # EfficientNet: features -> pool -> classifier
    dim = enc.classifier[-1].in_features
    enc.classifier = nn.Identity()
head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 128))
params = list(enc.parameters()) + list(head.parameters())
opt = torch.optim.Adam(params, lr=1e-4)


x = torch.rand(2 * batch, 3, size, size)
y = torch.arange(batch) % 2
enc.train(); head.train()
def step():
    z = F.normalize(head(enc(x)), dim=1)
    f = torch.stack([z[:batch], z[batch:]], dim=1)
    loss = supcon(f, y)
    opt.zero_grad(); loss.backward(); opt.step()
    loss.item()
for _ in range(2):
    step()
t = time.perf_counter()
for _ in range(steps):
    step()
print(f"supcon_step_images_per_s {2 * batch * steps / (time.perf_counter() - t):.1f}")
