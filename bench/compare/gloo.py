#!/usr/bin/python3
"""Gloo through PyTorch, the peer figure for scripts/bench compare.

Starts this host's ranks of a torch.distributed job (backend gloo) and times,
for each BYTES:ROUNDS[:WARMUP[:SECONDS]], one or both (taking turns) of two
patterns on an fp32 model:
  allreduce  dist.all_reduce (sum)
  ps         the seed design's pattern: every rank but 0 sends its gradient
             to rank 0 (isend), which sums them with its own and sends the
             sum back (isend); nonblocking on both sides
SECONDS is a time box: the warm-up ends after WARMUP rounds or SECONDS
seconds (at least one round), the timed rounds after ROUNDS rounds or
SECONDS seconds (at least min(ROUNDS, 3)), by rank 0's clock.
Every round starts after a barrier (with a time box, an all_reduce (max) of
rank 0's vote to stop, which is one); rank 0 times the pattern alone and
prints, per size,
  gloo: mode=M ranks=P bytes=B rounds=R median_ms=T min_ms=N [warmup=W box_s=S]
Usage: gloo.py --mode allreduce|ps|allreduce,ps --world P --ranks FIRST-LAST
               --addr HOST --port PORT [--ifname IF] BYTES:ROUNDS[:WARMUP[:SECONDS]]...
       gloo.py --serve DIR
Run under Debian's /usr/bin/python3 (python3-torch).

--serve imports torch once and then runs launches on request, each forked
from this process, so that a series of launches pays PyTorch's start-up
(seconds of CPU, tens of seconds on a loaded host) once. It reads requests
from the FIFO DIR/requests (it creates DIR/ready once torch is imported),
one line each:
  ID SECONDS OUT NETNS ARGS... [:: NETNS ARGS...]...
Every group NETNS ARGS... is one launch as above (ARGS as on the command
line), run in the network namespace NETNS (a name under /run/netns, as
ip netns uses; "-": this one), all groups at once, their output appended to
the file OUT. When all have ended, or SECONDS have passed (then they are
killed and the status is 124), it writes the status (0: every group
succeeded) to DIR/ID.rc. The line "quit" ends it.
"""
import argparse
import ctypes
import os
import shlex
import signal
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


def spec_of(spec):
    """BYTES:ROUNDS[:WARMUP[:SECONDS]] (untimed warm-up rounds, 3 unless
    given; SECONDS: the time box, 0 for none)."""
    w = spec.split(":")
    if not 2 <= len(w) <= 4:
        raise ValueError(f"{spec}: want BYTES:ROUNDS[:WARMUP[:SECONDS]]")
    nbytes, rounds = int(w[0]), int(w[1])
    warmup = int(w[2]) if len(w) > 2 else 3
    box = float(w[3]) if len(w) > 3 else 0.0
    if nbytes < 4 or rounds < 1 or warmup < 0 or (len(w) > 3 and not 0 < box <= 86400):
        raise ValueError(f"{spec}: want BYTES:ROUNDS[:WARMUP[:SECONDS]]")
    return nbytes, rounds, warmup, box


def go_on(rank, done, least, most, box, t0):
    """Whether the next round of a phase is run; a barrier."""
    if done >= most:
        return False
    if box <= 0:
        dist.barrier()
        return True
    vote = torch.tensor([1 if rank == 0 and done >= least and time.perf_counter() - t0 >= box else 0],
                        dtype=torch.int32)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return int(vote[0]) == 0


def one(rank, args, mode, spec):
    nbytes, rounds, warmup, box = spec_of(spec)
    n = nbytes // 4
    grad = (torch.arange(n, dtype=torch.float32) % 7) * 0.25
    parts = [torch.empty(n, dtype=torch.float32) for _ in range(1, args.world)] if rank == 0 else []

    def pattern(buf):
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

    warm, p0 = 0, time.perf_counter()
    while go_on(rank, warm, 1, warmup, box, p0):
        buf = grad.clone()
        pattern(buf)
        warm += 1
    t, p0 = [], time.perf_counter()
    while go_on(rank, len(t), min(rounds, 3), rounds, box, p0):
        buf = grad.clone()
        t0 = time.perf_counter()
        pattern(buf)
        t.append((time.perf_counter() - t0) * 1e3)
    want = args.world * float((n - 1) % 7) * 0.25
    if float(buf[n - 1]) != want:
        print(f"gloo: rank {rank}: sum {float(buf[n - 1])}, want {want}", file=sys.stderr)
        sys.exit(1)
    t.sort()
    if rank == 0:
        boxed = f" warmup={warm} box_s={box:g}" if box > 0 else ""
        print(f"gloo: mode={mode} ranks={args.world} bytes={nbytes} rounds={len(t)} "
              f"median_ms={t[len(t) // 2]:.3f} min_ms={t[0]:.3f}{boxed}", flush=True)


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--ranks", required=True)
    p.add_argument("--addr", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ifname", default="")
    p.add_argument("sizes", nargs="+")
    args = p.parse_args(argv)
    if not args.mode or any(m not in ("allreduce", "ps") for m in args.mode.split(",")):
        p.error("--mode: allreduce, ps or allreduce,ps")
    for spec in args.sizes:
        try:
            spec_of(spec)
        except ValueError as e:
            p.error(str(e))
    return args


def launch(args):
    """This host's ranks, forked from this process (torch imported once);
    0 when all of them succeeded."""
    first, last = (int(x) for x in args.ranks.split("-"))
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=run, args=(r, args)) for r in range(first, last + 1)]
    for q in procs:
        q.start()
    rc = 0
    for q in procs:
        q.join()
        rc = rc or q.exitcode
    return 1 if rc else 0


def group(netns, argv, out):
    """Forked child of --serve: one launch in NETNS, output to OUT."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgid(0, 0)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        if netns != "-":
            libc = ctypes.CDLL(None, use_errno=True)
            ns = os.open(os.path.join("/run/netns", netns), os.O_RDONLY)
            if libc.setns(ns, 0x40000000) != 0:  # CLONE_NEWNET
                e = ctypes.get_errno()
                raise OSError(e, f"setns {netns}: {os.strerror(e)}")
            os.close(ns)
        rc = launch(parse(argv))
    except SystemExit as e:  # argparse
        rc = e.code if isinstance(e.code, int) else 2
    except Exception as e:  # noqa: BLE001 - told, and the launch fails
        print(f"gloo: {netns}: {e}", file=sys.stderr)
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


RUNNING = []


def stop(pids):
    for q in pids:
        try:
            os.killpg(q, signal.SIGKILL)
        except ProcessLookupError:
            pass


def serve(d):
    req = os.path.join(d, "requests")

    def term(_sig, _frame):
        # The launch under way goes with the server.
        stop(RUNNING)
        os._exit(1)
    signal.signal(signal.SIGTERM, term)
    # torch is imported by now: tell whoever waits for that.
    open(os.path.join(d, "ready"), "w").close()
    while True:
        with open(req) as f:
            lines = f.read().splitlines()
        for line in lines:
            w = shlex.split(line)
            if not w:
                continue
            if w[0] == "quit":
                return 0
            jid, secs, out, rest = w[0], float(w[1]), w[2], w[3:]
            groups, cur = [], []
            for x in rest + ["::"]:
                if x == "::":
                    if cur:
                        groups.append(cur)
                    cur = []
                else:
                    cur.append(x)
            pids = RUNNING
            for g in groups:
                pid = os.fork()
                if pid == 0:
                    group(g[0], g[1:], out)
                pids.append(pid)
                try:  # before the child does: stop() must find its group
                    os.setpgid(pid, pid)
                except OSError:
                    pass
            rc, deadline = 0, time.monotonic() + secs
            while pids:
                pid, st = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    if time.monotonic() > deadline:
                        stop(pids)
                        for q in pids:
                            os.waitpid(q, 0)
                        pids.clear()
                        rc = 124
                    else:
                        time.sleep(0.05)
                    continue
                if pid in pids:
                    pids.remove(pid)
                    rc = rc or (os.waitstatus_to_exitcode(st) and 1)
            with open(os.path.join(d, jid + ".rc.tmp"), "w") as f:
                f.write(f"{rc}\n")
            os.rename(os.path.join(d, jid + ".rc.tmp"), os.path.join(d, jid + ".rc"))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        sys.exit(serve(sys.argv[2]))
    sys.exit(launch(parse(sys.argv[1:])))


if __name__ == "__main__":
    main()
