"""PyTorch baseline of one SupCon-MPL step (scripts/bench-train), written like the authors'
main.py loop (DESIGN.md section 9, step 3): teacher and student = torchvision backbone without
its classifier + SupCon head, each with a Linear(F, 2) classifier and its own Adam; per step:
teacher features (eval, no grad) of cat[a, uw, us] -> teacher logits; the student's labelled
CE before its update; student SupCon on the teacher's hard pseudo labels of (uw, us) and a step;
the student classifier on a (encoder frozen, eval) and a step; h = the student's CE change;
teacher SupCon on (a, b) and a step; teacher classifier on CE(t_l, y) + h * CE(t_us, argmax)
and a step. Random inputs; prints views/s (2 x (labelled + unlabelled) per step).
  bench_mpl.py BACKBONE LABELLED UNLABELLED SIZE STEPS THREADS"""
import sys, time
import torch, torchvision
import torch.nn as nn
import torch.nn.functional as F

from supcon_loss import supcon

backbone, nl, nu, size, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
torch.manual_seed(0)


def encoder():
    enc = getattr(torchvision.models, backbone)(weights=None)
    if hasattr(enc, "fc"):
        dim = enc.fc.in_features
        enc.fc = nn.Identity()
    else:
        dim = enc.classifier[-1].in_features
        enc.classifier = nn.Identity()
    return enc, dim


class SupConNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, dim = encoder()
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 128))
        self.dim = dim

    def forward(self, x):
        return F.normalize(self.head(self.encoder(x)), dim=1)


teacher, student = SupConNet(), SupConNet()
t_cls, s_cls = nn.Linear(teacher.dim, 2), nn.Linear(student.dim, 2)
opt_t, opt_tc = torch.optim.Adam(teacher.parameters(), lr=1e-4), torch.optim.Adam(t_cls.parameters(), lr=1e-4)
opt_s, opt_sc = torch.optim.Adam(student.parameters(), lr=1e-4), torch.optim.Adam(s_cls.parameters(), lr=1e-4)
la = torch.rand(2 * nl, 3, size, size)
ua = torch.rand(2 * nu, 3, size, size)
y = torch.arange(nl) % 2


def student_ce(a):
    student.eval()
    with torch.no_grad():
        return F.cross_entropy(s_cls(student.encoder(a)), y).item()


def step():
    a, uw, us = la[:nl], ua[:nu], ua[nu:]
    teacher.eval()
    with torch.no_grad():
        t_feats = teacher.encoder(torch.cat([a, uw, us]))
    t_logits = t_cls(t_feats)
    t_l, t_uw, t_us = t_logits[:nl], t_logits[nl:nl + nu], t_logits[nl + nu:]
    s_old = student_ce(a)
    student.train()
    z = student(ua)
    s_loss = supcon(torch.stack([z[:nu], z[nu:]], dim=1), t_uw.detach().argmax(-1))
    opt_s.zero_grad(); s_loss.backward(); opt_s.step()
    student.eval()
    with torch.no_grad():
        s_f = student.encoder(a)
    s_ce = F.cross_entropy(s_cls(s_f), y)
    opt_sc.zero_grad(); s_ce.backward(); opt_sc.step()
    h = student_ce(a) - s_old
    teacher.train()
    z = teacher(la)
    t_sup = supcon(torch.stack([z[:nl], z[nl:]], dim=1), y)
    opt_t.zero_grad(); t_sup.backward(); opt_t.step()
    t_loss = F.cross_entropy(t_l, y) + h * F.cross_entropy(t_us, t_us.detach().argmax(-1))
    opt_tc.zero_grad(); t_loss.backward(); opt_tc.step()
    t_loss.item()


for _ in range(2):
    step()
t = time.perf_counter()
for _ in range(steps):
    step()
print(f"mpl_step_images_per_s {2 * (nl + nu) * steps / (time.perf_counter() - t):.1f}")
