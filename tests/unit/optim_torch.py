#!/usr/bin/python3
"""PyTorch's side of tests/unit/optim_torch.c: runs torch.optim.Adam or
AdamW on float32 parameters with the gradients given, and writes the
parameters after every step.

Usage: optim_torch.py adam|adamw LR BETA1 BETA2 EPS WD N STEPS IN OUT
IN holds N floats of initial parameters, then STEPS x N gradients (float32,
native byte order); OUT gets STEPS x N parameters, one row per step.
"""
import sys

import torch


def main():
    name, lr, b1, b2, eps, wd, n, steps, src, dst = sys.argv[1:]
    n, steps = int(n), int(steps)
    with open(src, "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
    if data.numel() != n * (steps + 1):
        sys.exit("optim_torch.py: %d floats in %s, expected %d" % (data.numel(), src, n * (steps + 1)))
    w = torch.nn.Parameter(data[:n].clone())
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    # foreach=False: the single-tensor loop, PyTorch's reference path.
    opt = cls([w], lr=float(lr), betas=(float(b1), float(b2)), eps=float(eps),
              weight_decay=float(wd), foreach=False)
    out = []
    for s in range(steps):
        w.grad = data[n * (s + 1):n * (s + 2)].clone()
        opt.step()
        out.append(w.detach().clone())
    with open(dst, "wb") as f:
        f.write(torch.stack(out).numpy().tobytes())


if __name__ == "__main__":
    main()
