"""PyTorch reference of teacher stage 1 (SupCon) on a faces.csv, to compare loss curves with
`scmpl train teacher`: torchvision transforms as the reference code, ResNet (random init),
head, SupCon, Adam. Usage: teacher_fixture.py FACES.csv BACKBONE STEPS BATCH LR"""
import csv, os, sys
import torch, torchvision
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from supcon_loss import supcon

faces, backbone, steps, batch, lr = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.manual_seed(777)
base = os.path.dirname(faces)
rows = [r for r in csv.DictReader(open(faces)) if r["split"] == "train" and r["label"] != ""]
aug = T.Compose([T.RandomResizedCrop(64, scale=(0.5, 1.0)), T.RandomHorizontalFlip(),
                 T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2), T.ToTensor(),
                 T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
imgs = [Image.open(os.path.join(base, r["path"])).convert("RGB") for r in rows]
labels = torch.tensor([int(r["label"]) for r in rows])
enc = getattr(torchvision.models, backbone)(weights=None); dim = enc.fc.in_features; enc.fc = nn.Identity()
head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 128))
opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=lr)

enc.train(); head.train()
for step in range(steps):
    idx = torch.randperm(len(imgs))[:batch]
    x = torch.stack([aug(imgs[i]) for i in idx] + [aug(imgs[i]) for i in idx])
    z = F.normalize(head(enc(x)), dim=1)
    loss = supcon(torch.stack([z[:batch], z[batch:]], 1), labels[idx])
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 5 == 0 or step == steps - 1:
        print(step + 1, round(loss.item(), 4), flush=True)
