#!/usr/bin/python3
"""Train an MLP on scikit-learn's handwritten digits through ragg.

Each worker holds its own share of the training set and takes batches of
its own size from it: worker w takes --batch + 4w samples per step (16, 20,
24, 28 with 4 workers), from a share of the set proportional to that. It
steps with ragg.optim.DistributedOptimizer, weighting its gradient (the mean
over its batch) by its batch size: the servers apply SGD to the
sample-weighted mean of all workers' gradients, which is the mean gradient
over the union of their batches, the global batch. Worker 0 also trains the same model in one process
on that union, step by step, and prints the test accuracy of both per epoch.
It checks that the parameters of the first --check-steps steps agree to
float rounding, and the final accuracies to within one point.

Run (the servers' optimizer is set by the environment):

    RAGG_LR=0.2 RAGG_OPTIMIZER=sgd ragg-run -w 4 -a 1 -s 1 -- \\
        /usr/bin/python3 examples/torch/train_digits.py

Needs Debian's python3-torch and python3-sklearn (the data set ships with
the latter). ragg is found as the package python/ragg next to this file or
on PYTHONPATH; libragg.so as python/ragg says (RAGG_LIBRARY, the build
tree, the system).
"""
import argparse
import math
import os
import sys

try:
    import ragg
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import ragg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=16, help="worker 0's samples per step")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--check-steps", type=int, default=20)
    ap.add_argument("--tolerance", type=float, default=1e-5,
                    help="largest parameter difference allowed in the checked steps")
    args = ap.parse_args()

    ctx = ragg.Context()
    if ctx.role != ragg.WORKER:
        try:
            ctx.serve()
        finally:
            ctx.finalize()
        return 0
    try:
        return train(ctx, args)
    finally:
        ctx.finalize()


def train(ctx, args):
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from ragg.optim import DistributedOptimizer

    torch.set_num_threads(1)
    rank, m = ctx.rank, ctx.job_size(ragg.WORKER)
    opts = ctx.opts()
    if opts.optimizer != "sgd":
        print("train_digits: RAGG_OPTIMIZER=%s; the single-process comparison needs sgd" % opts.optimizer,
              file=sys.stderr)
        return 2

    digits = load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = np.random.default_rng(0).permutation(len(X))
    ntest = len(X) // 5
    test, train_idx = order[:ntest], order[ntest:]
    sizes = [args.batch + 4 * w for w in range(m)]
    cuts = [round(len(train_idx) * sum(sizes[:w]) / sum(sizes)) for w in range(m + 1)]
    shares = [train_idx[cuts[w]:cuts[w + 1]] for w in range(m)]
    # One step count for all, the smallest; the samples a worker has left
    # over go into its last batch of the epoch.
    steps = min(math.ceil(len(shares[w]) / sizes[w]) for w in range(m))

    def batches(worker, epoch):
        b = sizes[worker]
        perm = np.random.default_rng(1000 * epoch + worker).permutation(shares[worker])
        return [perm[k * b:(k + 1) * b] if k < steps - 1 else perm[k * b:] for k in range(steps)]

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, 10))
    reference = copy.deepcopy(model) if rank == 0 else None  # worker 0's values start both
    opt = DistributedOptimizer(ctx, model.parameters(), name="digits-mlp")
    if reference is not None:
        ref_opt = torch.optim.SGD(reference.parameters(), lr=opts.lr)

    def accuracy(net):
        with torch.no_grad():
            return 100.0 * (net(X[test]).argmax(1) == y[test]).float().mean().item()

    if rank == 0:
        print("train_digits: workers=%d agents=%d servers=%d transport=%s lr=%g batches=%s steps/epoch=%d"
              % (m, ctx.job_size(ragg.AGENT), ctx.job_size(ragg.SERVER), ctx.transport, opts.lr,
                 "+".join(map(str, sizes)), steps))
        print("epoch  ragg_acc  single_process_acc")
    max_diff, max_diff_all, step = 0.0, 0.0, 0
    acc = ref_acc = None
    for epoch in range(args.epochs):
        mine = batches(rank, epoch)
        every = [batches(w, epoch) for w in range(m)] if reference is not None else None
        for k in range(steps):
            b = mine[k]
            opt.zero_grad()
            F.cross_entropy(model(X[b]), y[b]).backward()
            opt.step(weight=len(b))
            if reference is None:
                continue
            g = np.concatenate([every[w][k] for w in range(m)])
            ref_opt.zero_grad()
            F.cross_entropy(reference(X[g]), y[g]).backward()
            ref_opt.step()
            step += 1
            with torch.no_grad():
                d = max((p - q).abs().max().item()
                        for p, q in zip(model.parameters(), reference.parameters()))
            max_diff_all = max(max_diff_all, d)
            if step <= args.check_steps:
                max_diff = max(max_diff, d)
        if reference is not None:
            acc, ref_acc = accuracy(model), accuracy(reference)
            print("%5d  %8.2f  %18.2f" % (epoch + 1, acc, ref_acc), flush=True)

    if reference is None:
        return 0
    print("train_digits: final accuracy %.2f (single process %.2f), max parameter difference "
          "over the first %d steps %.3g (over all %d steps %.3g)"
          % (acc, ref_acc, min(step, args.check_steps), max_diff, step, max_diff_all))
    ok = True
    if not max_diff <= args.tolerance:
        print("train_digits: parameters differ by %.3g > %g in the first %d steps"
              % (max_diff, args.tolerance, args.check_steps), file=sys.stderr)
        ok = False
    if not abs(acc - ref_acc) <= 1.0:
        print("train_digits: accuracy %.2f is more than 1 point from %.2f" % (acc, ref_acc),
              file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
