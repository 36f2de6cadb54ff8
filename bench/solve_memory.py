"""Peak resident memory of a long `openended solve`, as it goes (Linux).

    python bench/solve_memory.py PATH/TO/p3/train.json [--puzzles 200] [--samples 10]
                                 [--compute-type int8]

Runs ``openended solve`` on the file's first ``--puzzles`` puzzles (P3's train split opens
with its longest prompts) and prints, at each progress line, the puzzles done, the process's
resident memory and its peak so far (``VmRSS``, ``VmHWM``). Aim (issue 34): a peak under
2 GB, flat in the number of puzzles (the peak after half the puzzles within 10% of the end's).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


def status_mib(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("puzzles_file", type=Path)
    parser.add_argument("--puzzles", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    command = [
        sys.executable,
        "-c",
        "import sys; from openended.apps.cli.main import main; sys.exit(main())",
        "solve",
        str(args.puzzles_file),
        "--limit",
        str(args.puzzles),
        "--samples",
        str(args.samples),
        "--compute-type",
        args.compute_type,
        "--backend",
        args.backend,
    ]
    start = time.perf_counter()
    process = subprocess.Popen(  # progress lines go to stderr
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    peak = [0.0]

    def watch() -> None:  # VmHWM is the kernel's own peak; this only keeps the last value
        while process.poll() is None:
            peak[0] = max(peak[0], status_mib(process.pid, "VmHWM") or 0.0)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    print(f"{'puzzles':>8}{'RSS MiB':>9}{'peak MiB':>10}{'seconds':>9}", flush=True)
    marks: list[tuple[int, float]] = []
    assert process.stdout is not None
    for line in process.stdout:
        done = re.match(r"solved for (\d+)/(\d+) puzzles", line.strip())
        if not done:
            print(line, end="", flush=True)
            continue
        hwm = status_mib(process.pid, "VmHWM")
        peak[0] = max(peak[0], hwm)
        marks.append((int(done[1]), peak[0]))
        print(
            f"{done[1]:>8}{status_mib(process.pid, 'VmRSS'):>9.0f}{peak[0]:>10.0f}"
            f"{time.perf_counter() - start:>9.0f}",
            flush=True,
        )
    if process.wait() != 0:
        raise SystemExit(f"openended solve failed ({process.returncode})")
    half = next((p for n, p in marks if n >= args.puzzles // 2), peak[0])
    print(
        f"\n{args.puzzles} puzzles x {args.samples} samples, {args.compute_type}: peak RSS "
        f"{peak[0]:.0f} MiB (aim < 2048), after half the puzzles {half:.0f} MiB "
        f"({peak[0] / half:.2f}x; flat: <= 1.10x), {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
