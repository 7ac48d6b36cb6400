"""Peak memory of a command and all its processes (torchrun's workers included).

Samples ``/proc/<pid>/smaps_rollup`` of the command's process tree every half second and prints
the peaks of the summed ``Pss`` (proportional set size: a page shared by two processes counts
half in each, so pages of a memory-mapped snapshot are not counted twice), ``Pss_Anon`` (the
processes' own memory) and ``Pss_File`` (mapped files: page cache the kernel can drop), with a
coarse timeline. ``/usr/bin/time -v`` reports one process's peak RSS only.

    python bench/_pss.py shopsight evaluate --store shop.duckdb --models als --nproc 2
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

FIELDS = ("Pss", "Pss_Anon", "Pss_File")


def rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0].rstrip(":") in FIELDS:
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:  # the process ended between listing and reading
        pass
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    t0 = time.time()
    proc = subprocess.Popen(argv)
    root = psutil.Process(proc.pid)
    peak = dict.fromkeys(FIELDS, 0)
    when = dict.fromkeys(FIELDS, 0.0)
    timeline: list[tuple[float, int, int]] = []
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        total = dict.fromkeys(FIELDS, 0)
        for p in tree:
            for k, v in rollup(p.pid).items():
                total[k] += v
        for k in FIELDS:
            if total[k] > peak[k]:
                peak[k], when[k] = total[k], time.time() - t0
        timeline.append((time.time() - t0, total["Pss_Anon"], total["Pss_File"]))
        time.sleep(0.5)
    rc = proc.wait()
    step = max(1, len(timeline) // 30)
    line = " ".join(f"{t:.0f}s:{a / 1e9:.2f}/{f / 1e9:.2f}" for t, a, f in timeline[::step])
    print(f"timeline (anon/file GB): {line}", file=sys.stderr)
    peaks = ", ".join(f"{k} {peak[k] / 1e9:.2f} GB at {when[k]:.0f} s" for k in FIELDS)
    print(f"rc {rc}, wall {time.time() - t0:.1f} s, peak {peaks}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
