#!/usr/bin/python3
"""Gloo through PyTorch, the peer figure for scripts/bench compare.

Starts this host's ranks of a torch.distributed job (backend gloo) and times,
for each BYTES:ROUNDS[:WARMUP], one or both (taking turns) of two patterns on an fp32
model:
  allreduce  dist.all_reduce (sum)
  ps         the seed design's pattern: every rank but 0 sends its gradient
             to rank 0 (isend), which sums them with its own and sends the
             sum back (isend); nonblocking on both sides
Every round starts after a barrier; rank 0 times the pattern alone and
prints, per size,
  gloo: mode=M ranks=P bytes=B rounds=R median_ms=T min_ms=N
Usage: gloo.py --mode allreduce|ps|allreduce,ps --world P --ranks FIRST-LAST
               --addr HOST --port PORT [--ifname IF] BYTES:ROUNDS[:WARMUP]...
Run under Debian's /usr/bin/python3 (python3-torch).
"""
import argparse
import os
import sys
import time

import multiprocessing as mp

import torch
import torch.distributed as dist


def run(rank, args):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = args.addr
    os.environ["MASTER_PORT"] = str(args.port)
    if args.ifname:
        os.environ["GLOO_SOCKET_IFNAME"] = args.ifname
    dist.init_process_group("gloo", rank=rank, world_size=args.world)
    for spec in args.sizes:
        for mode in args.mode.split(","):
            one(rank, args, mode, spec)
    dist.destroy_process_group()


def one(rank, args, mode, spec):
    # BYTES:ROUNDS[:WARMUP] (untimed warm-up rounds, 3 unless given)
    nbytes, rounds, warmup = ([int(x) for x in spec.split(":")] + [3])[:3]
    n = nbytes // 4
    grad = (torch.arange(n, dtype=torch.float32) % 7) * 0.25
    parts = [torch.empty(n, dtype=torch.float32) for _ in range(1, args.world)] if rank == 0 else []
    t = []
    for r in range(-warmup, rounds):
        buf = grad.clone()
        dist.barrier()
        t0 = time.perf_counter()
        if mode == "allreduce":
            dist.all_reduce(buf)
        elif rank == 0:
            reqs = [dist.irecv(p, src=i + 1) for i, p in enumerate(parts)]
            for q in reqs:
                q.wait()
            for p in parts:
                buf += p
            for q in [dist.isend(buf, dst=i) for i in range(1, args.world)]:
                q.wait()
        else:
            dist.isend(buf, dst=0).wait()
            dist.irecv(buf, src=0).wait()
        if r >= 0:
            t.append((time.perf_counter() - t0) * 1e3)
    want = args.world * float((n - 1) % 7) * 0.25
    if float(buf[n - 1]) != want:
        print(f"gloo: rank {rank}: sum {float(buf[n - 1])}, want {want}", file=sys.stderr)
        sys.exit(1)
    t.sort()
    if rank == 0:
        print(f"gloo: mode={mode} ranks={args.world} bytes={nbytes} rounds={rounds} "
              f"median_ms={t[len(t) // 2]:.3f} min_ms={t[0]:.3f}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--ranks", required=True)
    p.add_argument("--addr", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ifname", default="")
    p.add_argument("sizes", nargs="+")
    args = p.parse_args()
    if not args.mode or any(m not in ("allreduce", "ps") for m in args.mode.split(",")):
        p.error("--mode: allreduce, ps or allreduce,ps")
    first, last = (int(x) for x in args.ranks.split("-"))
    # torch is imported once, here, and the ranks fork from this process.
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=run, args=(r, args)) for r in range(first, last + 1)]
    for q in procs:
        q.start()
    rc = 0
    for q in procs:
        q.join()
        rc = rc or q.exitcode
    sys.exit(1 if rc else 0)


if __name__ == "__main__":
    main()
