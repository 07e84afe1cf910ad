#!/usr/bin/python3
"""The figures of scripts/bench compare from its raw records.

Usage: report.py OUT_DIR [NOTE...]
       report.py --readme README OUT_DIR
Reads OUT_DIR/compare.raw, lines "CASE BYTES RUN MEDIAN_MS" (one run's
median round time), "limit NAME VALUE", "phase KIND SECONDS" (wall time
of a kind of run, all runs together so far: a kind's last record counts),
"load L" (the 1-minute load average, sampled during the run) and
"start EPOCH" (when the run began);
writes OUT_DIR/compare.json,
OUT_DIR/compare.md (the tables), OUT_DIR/compare-time.png and
OUT_DIR/compare-bw.png (gnuplot), prints the tables and ends with the
compare line. A case's figure at a size is the median of its runs' medians.
Each NOTE is a line for the table's "what this run leaves out" list.
COMPARE_WALL_S, when set, is the whole run's wall time in seconds: the
table gives it and the compare line ends with elapsed_s=; COMPARE_CPU_S,
when set, the CPU time (user and system) the run's processes used.

--readme rewrites, in README, what lies between the lines
<!-- compare:begin --> and <!-- compare:end --> with OUT_DIR's last report
(compare.json and compare.md): the run's date, host, load and times, the
tables, the plots and the compare line. Without both markers, once each
and in that order, it changes nothing and exits 1.
"""
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys

BEGIN = "<!-- compare:begin -->"
END = "<!-- compare:end -->"

SIZES = [4096, 262144, 1048576, 16777216, 67108864]
ONE = ["ragg_shm", "mpi_shm", "ragg_tcp", "mpi_tcp", "gloo_allreduce", "gloo_ps"]
TWO = ["2node10g_ragg", "2node10g_mpi", "2node10g_gloo"]
CODEC2 = ["2node10g_ragg_fp16", "2node10g_ragg_onebit"]
ONEG = ["2node1g_ragg", "2node1g_ragg_onebit", "2node1g_mpi", "2node1g_gloo"]
LINK_BPS = 10e9


def size_name(b):
    return f"{b >> 20}MiB" if b >= 1 << 20 else f"{b >> 10}KiB"


def fmt(x, d=2):
    """Two decimals, or two significant digits below 0.1."""
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.{d}f}" if abs(x) >= 0.1 or x == 0 else f"{x:.2g}"


def host_info():
    """This host: cores, CPU model, whether it is a virtual machine."""
    model, virt = None, False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "model name" and model is None:
                    model = " ".join(v.split())
                if k == "flags" and "hypervisor" in v.split():
                    virt = True
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model or platform.machine(), "virtual": virt,
            "kernel": platform.release()}


def readme_section(doc, out, readme):
    """The README's section for the report of OUT (doc: its compare.json)."""
    with open(os.path.join(out, "compare.md")) as f:
        table = f.read().rstrip("\n")
    h = doc.get("host") or {}
    rel = os.path.relpath(os.path.abspath(out), os.path.dirname(os.path.abspath(readme)))
    when = doc.get("date") or "an unrecorded date"
    load = doc.get("load") or {}
    what = [f"The latest run (`{rel}/`, {doc.get('runs', '?')} runs per kind) was on {when}, "
            f"on {h.get('cores', '?')} cores of {h.get('cpu', 'an unrecorded CPU')}"
            + (" (a virtual machine)" if h.get("virtual") else "") + ","]
    if load.get("min") is not None:
        what.append(f"at a load average (1 minute) of {fmt(load['min'])} to {fmt(load['max'])} "
                    "during the run;")
    else:
        what.append("at an unrecorded load;")
    times = []
    if doc.get("wall_s") is not None:
        times.append(f"it took {doc['wall_s']:.0f} s of wall time")
    if doc.get("cpu_s") is not None:
        times.append(f"{doc['cpu_s']:.0f} s of CPU time")
    what.append((" for ".join(times) if times else "its time was not recorded") + ".")
    lines = [BEGIN, "", " ".join(what), "", table, "",
             f"![round time against size]({rel}/compare-time.png)", "",
             f"![bandwidth against size]({rel}/compare-bw.png)", "",
             "```", doc["line"], "```", "", END]
    return "\n".join(lines) + "\n"


def readme(path, out):
    """Rewrite PATH's section between the markers; 0, or 1 with the
    reason on stderr and PATH unchanged."""
    try:
        with open(os.path.join(out, "compare.json")) as f:
            doc = json.load(f)
        with open(path) as f:
            text = f.read()
        lines = text.splitlines(keepends=True)
        begins = [i for i, x in enumerate(lines) if x.strip() == BEGIN]
        ends = [i for i, x in enumerate(lines) if x.strip() == END]
        if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
            print(f"report.py: {path}: want one {BEGIN} line, then one {END} line "
                  f"(found {len(begins)} and {len(ends)}); nothing changed", file=sys.stderr)
            return 1
        new = "".join(lines[:begins[0]]) + readme_section(doc, out, path) + "".join(lines[ends[0] + 1:])
    except (OSError, ValueError, KeyError) as e:
        print(f"report.py: {e}; {path} unchanged", file=sys.stderr)
        return 1
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--readme":
        if len(sys.argv) != 4:
            print("usage: report.py --readme README OUT_DIR", file=sys.stderr)
            return 2
        return readme(sys.argv[2], sys.argv[3])
    out = sys.argv[1]
    notes = sys.argv[2:]
    start = None
    runs, limits, phases, loads = {}, {}, {}, []
    with open(os.path.join(out, "compare.raw")) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "phase":
                phases[w[1]] = float(w[2])
                continue
            if w[0] == "load":
                loads.append(float(w[1]))
                continue
            if w[0] == "start":
                start = int(w[1])
                continue
            if w[0] == "limit":
                try:
                    v = float(w[2])
                    limits[w[1]] = None if math.isnan(v) else v
                except ValueError:
                    limits[w[1]] = None
                continue
            runs.setdefault(w[0], {}).setdefault(int(w[1]), []).append(float(w[3]))
    med = {c: {b: statistics.median(v) for b, v in s.items()} for c, s in runs.items()}

    def t(c, b):
        return med.get(c, {}).get(b)

    def ratio(a, b, size):
        x, y = t(a, size), t(b, size)
        return x / y if x is not None and y else None

    link_ms = {b: b * 8 / LINK_BPS * 1e3 for b in SIZES}
    eff = {b: (link_ms[b] / t("2node10g_ragg", b)) if t("2node10g_ragg", b) else None for b in SIZES}
    # The same against what the shaped veth carried on this host, one
    # iperf3 stream each way at once (the veth is the host's CPUs copying:
    # it may fall short of the rate it is shaped to; a round loads both
    # directions at once).
    bidir = limits.get("iperf3_link10g_bidir_Mbps")
    veth_ms = {b: b * 8 / (bidir * 1e6) * 1e3 if bidir else None for b in SIZES}
    veth_eff = {b: veth_ms[b] / t("2node10g_ragg", b) if veth_ms[b] and t("2node10g_ragg", b) else None
                for b in SIZES}

    def cell(header, case=None, peer=None, fn=None):
        """A column: a case's figure, a ratio case ÷ peer, or fn(size)."""
        if fn is None:
            fn = (lambda b: ratio(case, peer, b)) if peer else (lambda b: t(case, b))
        return header, fn

    def link1g_ms(b):
        return b * 8 / 1e9 * 1e3

    def eff1g(b):
        return link1g_ms(b) / t("2node1g_ragg", b) if t("2node1g_ragg", b) else None

    # The tables: (caption, the case that must have figures for the table
    # to be shown (None: always), sizes, columns after the size).
    tables = [
        ("One node, 4 workers (ragg: 4 workers, 1 agent, 1 server); round time in ms, "
         "median of the runs' medians; ratios are ragg ÷ peer (below 1: ragg is faster).", None, SIZES,
         [cell("ragg shm", "ragg_shm"), cell("MPI shm", "mpi_shm"), cell("ragg tcp", "ragg_tcp"),
          cell("MPI tcp", "mpi_tcp"), cell("Gloo all_reduce", "gloo_allreduce"), cell("Gloo PS", "gloo_ps"),
          cell("ragg_shm/mpi_shm", "ragg_shm", "mpi_shm"), cell("ragg_tcp/mpi_tcp", "ragg_tcp", "mpi_tcp"),
          cell("ragg_tcp/gloo_allreduce", "ragg_tcp", "gloo_allreduce"),
          cell("ragg_tcp/gloo_ps", "ragg_tcp", "gloo_ps")]),
        ("ragg over tcp with each codec (RAGG_COMPRESS), same one-node jobs; "
         "ratios ÷ Gloo all_reduce.", ("ragg_tcp_fp16", "ragg_tcp_onebit"), SIZES,
         [cell("none", "ragg_tcp"), cell("fp16", "ragg_tcp_fp16"), cell("onebit", "ragg_tcp_onebit"),
          cell("Gloo all_reduce", "gloo_allreduce"),
          cell("fp16/gloo_allreduce", "ragg_tcp_fp16", "gloo_allreduce"),
          cell("onebit/gloo_allreduce", "ragg_tcp_onebit", "gloo_allreduce")]),
        ("Two emulated nodes (namespaces joined by a veth shaped to 10 Gbit/s each way), "
         "8 workers, 4 per node; link ms = the model's bytes over 10 Gbit/s; "
         "link_eff = link ms ÷ ragg's round; veth ms = the model's bytes at the rate the veth carried "
         "each way at once (two iperf3 streams, under Limits), veth_eff = veth ms ÷ ragg's round.", None, SIZES,
         [cell("ragg", "2node10g_ragg"), cell("MPI", "2node10g_mpi"), cell("Gloo all_reduce", "2node10g_gloo"),
          cell("ragg/mpi", "2node10g_ragg", "2node10g_mpi"), cell("ragg/gloo", "2node10g_ragg", "2node10g_gloo"),
          cell("link ms", fn=link_ms.get), cell("link_eff", fn=eff.get),
          cell("veth ms", fn=veth_ms.get), cell("veth_eff", fn=veth_eff.get),
          cell("ragg fp16", "2node10g_ragg_fp16"), cell("ragg onebit", "2node10g_ragg_onebit"),
          cell("fp16/gloo", "2node10g_ragg_fp16", "2node10g_gloo"),
          cell("onebit/gloo", "2node10g_ragg_onebit", "2node10g_gloo")]),
        ("The same two nodes with the link shaped to 1 Gbit/s (the sizes run at that rate); "
         "link ms = the model's bytes over 1 Gbit/s.", ONEG,
         [b for b in SIZES if any(t(c, b) is not None for c in ONEG)],
         [cell("ragg", "2node1g_ragg"), cell("ragg onebit", "2node1g_ragg_onebit"), cell("MPI", "2node1g_mpi"),
          cell("Gloo all_reduce", "2node1g_gloo"), cell("ragg/mpi", "2node1g_ragg", "2node1g_mpi"),
          cell("ragg/gloo", "2node1g_ragg", "2node1g_gloo"),
          cell("onebit/gloo", "2node1g_ragg_onebit", "2node1g_gloo"),
          cell("link ms", fn=link1g_ms), cell("link_eff", fn=eff1g)]),
    ]
    cores = os.cpu_count() or 1
    md = []
    for n, (caption, need, sizes, cols) in enumerate(tables):
        if need is not None and not (sizes and any(c in med for c in need)):
            continue
        if md:
            md.append("")
        md.append(caption)
        md.append("")
        md.append("| size | " + " | ".join(h for h, _ in cols) + " |")
        md.append("|" + "---|" * (len(cols) + 1))
        for b in sizes:
            md.append("| " + " | ".join([size_name(b)] + [fmt(f(b)) for _, f in cols]) + " |")
        if n == 0 and t("ragg_tcp_busy", 4096) is not None:
            md.append("")
            md.append(f"4 KiB over tcp with RAGG_POLL=busy: {fmt(t('ragg_tcp_busy', 4096), 3)} ms "
                      f"(default polling {fmt(t('ragg_tcp', 4096), 3)} ms; "
                      f"ragg_tcp_busy/gloo_allreduce={fmt(ratio('ragg_tcp_busy', 'gloo_allreduce', 4096))}, "
                      f"ragg_tcp_busy/mpi_tcp={fmt(ratio('ragg_tcp_busy', 'mpi_tcp', 4096))}).")
            if cores < 6:
                md.append(f"Busy polling keeps each of the job's 6 processes on a core; this host has "
                          f"{cores}, so a process spinning holds the core the one it waits for needs, "
                          "and every hand-off waits for the scheduler. It is for hosts with a core "
                          "per process.")
    md.append("")
    lim = []
    limits = {k: v for k, v in limits.items() if v is not None}
    if "copy_GBps" in limits:
        lim.append(f"memcpy {fmt(limits['copy_GBps'])} GB/s (64 MiB, one thread, best of 20)")
    if "iperf3_lo_Mbps" in limits:
        lim.append(f"iperf3 one stream on 127.0.0.1 {fmt(limits['iperf3_lo_Mbps'] / 1e3)} Gbit/s")
    if "sockperf_lo_pp_p50_us" in limits:
        lim.append(f"sockperf ping-pong on 127.0.0.1 (tcp, 64 B) median {fmt(limits['sockperf_lo_pp_p50_us'])} µs "
                   "(half a round trip)")
    if "iperf3_link10g_Mbps" in limits:
        lim.append(f"iperf3 one stream over the 10 Gbit/s veth {fmt(limits['iperf3_link10g_Mbps'] / 1e3)} Gbit/s")
    if "iperf3_link10g_bidir_Mbps" in limits:
        lim.append("iperf3 one stream each way at once over the 10 Gbit/s veth "
                   f"{fmt(limits['iperf3_link10g_bidir_Mbps'] / 1e3)} Gbit/s each way")
    if "iperf3_link1g_Mbps" in limits:
        lim.append(f"iperf3 one stream over the 1 Gbit/s veth {fmt(limits['iperf3_link1g_Mbps'] / 1e3)} Gbit/s")
    md.append("Limits, same run: " + "; ".join(lim) + ".")
    # What ragg's own round costs the host's CPUs: CPU time over the cores
    # is the shortest wall time that work can take here.
    cpu_lines = []
    for case, what in (("ragg_tcp", "one node over tcp"), ("2node10g_ragg", "two nodes at 10 Gbit/s")):
        c = limits.get("cpu_ms_" + case)
        if c is None:
            continue
        txt = (f"{what} {fmt(c)} ms, so at least {fmt(c / cores)} ms of wall time on this host's {cores} "
               f"cores (ragg's round took {fmt(t(case, 16777216))} ms")
        if case == "ragg_tcp" and t("mpi_tcp", 16777216):
            txt += f", Open MPI's allreduce over tcp {fmt(t('mpi_tcp', 16777216))} ms"
        if case == "2node10g_ragg":
            txt += f"; the model's bytes over the 10 Gbit/s link take {fmt(link_ms[16777216])} ms"
        cpu_lines.append(txt + ")")
    if cpu_lines:
        md.append("")
        md.append("CPU time of one 16 MiB round, user and system, all of ragg's processes and threads (a "
                  "100-round job less a 10-round one, over 90): " + "; ".join(cpu_lines) + ".")
    wall = os.environ.get("COMPARE_WALL_S")
    cpu = os.environ.get("COMPARE_CPU_S")
    if phases or wall:
        md.append("")
        md.append("Wall time" + (f": {wall} s in all" if wall else "") +
                  (f" ({float(cpu):.0f} s of CPU time)" if cpu else "") +
                  ("; by kind of run, all runs together (s): " +
                   ", ".join(f"{k} {v:.0f}" for k, v in sorted(phases.items(), key=lambda kv: -kv[1]))
                   if phases else "") + ".")
    if notes:
        md.append("")
        md.append("What this run leaves out:")
        md.append("")
        for n in notes:
            md.append(f"* {n}")
    missing = [f"{c} {size_name(b)}" for c in ONE + TWO for b in SIZES if t(c, b) is None]
    if missing:
        md.append("")
        md.append("No figure (not measured in this run, or its run failed: see compare.log): " + ", ".join(missing) + ".")
    table = "\n".join(md) + "\n"
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(table)

    # Plots: round time and bandwidth (the model's bytes over the round
    # time) against size, log-log.
    dat = os.path.join(out, "compare.dat")
    cases = [c for c in ONE + TWO + CODEC2 if c in med]
    with open(dat, "w") as f:
        for c in cases:
            f.write(f"# {c}\n")
            for b in SIZES:
                if t(c, b) is not None:
                    f.write(f"{b} {t(c, b)} {b / t(c, b) / 1e6}\n")
            f.write("\n\n")
    gp = os.path.join(out, "compare.gp")
    style = {"ragg": "lc rgb '#d62728' pt 7", "mpi": "lc rgb '#1f77b4' pt 5",
             "gloo": "lc rgb '#2ca02c' pt 9"}

    def plot(group, col):
        items = []
        for i, c in enumerate(cases):
            if c not in group:
                continue
            sys_ = next(k for k in style if k in c)
            dash = ("dt 3" if ("fp16" in c or "onebit" in c) else
                    "dt 2" if ("tcp" in c or c.endswith("_ps")) else "dt 1")
            look = ("lc rgb '#ff7f0e' pt 13" if "fp16" in c else
                    "lc rgb '#9467bd' pt 11" if "onebit" in c else style[sys_])
            items.append(f'"{dat}" index {i} using 1:{col} with linespoints lw 2 {dash} '
                         f'{look} title "{c}"')
        return "plot " + ", \\\n     ".join(items) + "\n" if items else ""

    with open(gp, "w") as f:
        f.write('set terminal pngcairo size 1200,550 noenhanced\nset logscale xy\nset grid\n'
                'set key left top opaque\nset xlabel "model size (fp32)"\nset xrange [3000:90000000]\n'
                'set xtics ("4K" 4096, "256K" 262144, "1M" 1048576, "16M" 16777216, "64M" 67108864)\n')
        for png, col, ylabel, what in (
                ("compare-time.png", 2, "round time (ms), lower is better", "round time"),
                ("compare-bw.png", 3, "model bytes / round time (GB/s), higher is better", "bandwidth")):
            key = "left top" if col == 2 else "right bottom"
            f.write(f'set output "{os.path.join(out, png)}"\nset ylabel "{ylabel}"\n'
                    f'set key {key} opaque\nset multiplot layout 1,2\n')
            f.write(f'set title "{what}: one node, 4 workers"\n' + plot(ONE, col))
            f.write(f'set title "{what}: two nodes, 8 workers, 10 Gbit/s link"\n' + plot(TWO + CODEC2, col))
            f.write("unset multiplot\n")
    subprocess.run(["gnuplot", gp], check=True)

    def r(x):
        return fmt(x)

    # The compare line: (name, case, peer, size); a size's first item is
    # preceded by the size's name.
    items = [("ragg_shm/mpi_shm", "ragg_shm", "mpi_shm", 16777216),
             ("ragg_tcp/mpi_tcp", "ragg_tcp", "mpi_tcp", 16777216),
             ("ragg_tcp/gloo_allreduce", "ragg_tcp", "gloo_allreduce", 16777216),
             ("ragg_tcp/gloo_ps", "ragg_tcp", "gloo_ps", 16777216),
             ("2node10g_ragg/mpi", "2node10g_ragg", "2node10g_mpi", 16777216),
             ("2node10g_ragg/gloo", "2node10g_ragg", "2node10g_gloo", 16777216),
             ("2node10g_link_eff", None, None, 16777216),
             ("ragg_tcp/gloo_allreduce", "ragg_tcp", "gloo_allreduce", 4096)]
    words, last = ["compare:"], None
    for name, case, peer, b in items:
        if b != last:
            words.append(size_name(b))
            last = b
        words.append(f"{name}={r(eff[b] if case is None else ratio(case, peer, b))}")
    line = " ".join(words)
    if wall:
        line += f" elapsed_s={wall}"
    doc = {
        "sizes": SIZES,
        "link_rate_bps": LINK_BPS,
        "limits": limits,
        "runs_ms": {c: {str(b): v for b, v in s.items()} for c, s in runs.items()},
        "median_ms": {c: {str(b): v for b, v in s.items()} for c, s in med.items()},
        "link_ms": {str(b): v for b, v in link_ms.items()},
        "link_eff": {str(b): v for b, v in eff.items()},
        "veth_ms": {str(b): v for b, v in veth_ms.items()},
        "veth_eff": {str(b): v for b, v in veth_eff.items()},
        "notes": notes,
        "phases_s": phases,
        "wall_s": float(wall) if wall else None,
        "cpu_s": float(cpu) if cpu else None,
        "date": (datetime.datetime.fromtimestamp(start, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                 if start is not None else None),
        "runs": max((r for s in runs.values() for v in s.values() for r in [len(v)]), default=0),
        "load": {"min": min(loads), "max": max(loads), "samples": len(loads)} if loads else None,
        "host": host_info(),
        "line": line,
    }
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump(doc, f, indent=1, allow_nan=True)
        f.write("\n")
    print(table)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
