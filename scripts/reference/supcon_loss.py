"""SupCon loss (Khosla et al., L_out) as the reference computes it, shared by the PyTorch
baselines of scripts/bench-train (bench_train.py, bench_mpl.py)."""
import torch


def supcon(features, labels, t=0.1, base=0.07):
    b, v = features.shape[:2]
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    logits = contrast @ contrast.T / t
    logits = logits - logits.max(dim=1, keepdim=True)[0].detach()
    mask = torch.eq(labels.view(-1, 1), labels.view(1, -1)).float().repeat(v, v)
    not_self = 1 - torch.eye(b * v)
    mask = mask * not_self
    exp = torch.exp(logits) * not_self
    log_prob = logits - torch.log(exp.sum(1, keepdim=True))
    mean_pos = (mask * log_prob).sum(1) / mask.sum(1).clamp(min=1)
    return (-(t / base) * mean_pos).mean()
