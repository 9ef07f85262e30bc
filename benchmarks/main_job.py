"""How long the README's main job takes once installed: ``stylexport stylize -o stylized.jpg`` (the bundled photo in
the default shipped style), as a new user runs it, the first time (an empty cache: the engine is exported
once) and again (the engine from the cache), each a fresh process, rounds interleaved.

    python benchmarks/main_job.py --rounds 3 -o benchmarks/results/main-job-stylize.json

Writes the JSON (environment, the command, every wall time, engine) and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from stylexport.bench.environment import environment


def run(cache: Path, out: Path) -> tuple[float, str]:
    env = {**os.environ, "STYLEXPORT_CACHE_DIR": str(cache)}
    env.pop("STYLEXPORT_STYLES_DIR", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stylexport", "stylize", "-o", str(out)], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: stylize failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    first, again, said = [], [], ""
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            cache = Path(tmp) / f"cache{i}"  # empty: the first run exports the engine
            seconds, said = run(cache, Path(tmp) / "stylized.jpg")
            first.append(seconds)
            again.append(run(cache, Path(tmp) / "stylized.jpg")[0])
            print(f"round {i + 1}: first {first[-1]:.1f} s, again {again[-1]:.1f} s ({said})", flush=True)
    results = {"environment": environment(torch.device("cpu")), "main_job": "stylexport stylize -o stylized.jpg",
               "last_line": said, "first_run_s": first, "cached_run_s": again,
               "first_run_median_s": statistics.median(first), "cached_run_median_s": statistics.median(again)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| run of `stylexport stylize -o stylized.jpg` | median | all |", "|---|---|---|",
             f"| first (empty cache: exports the engine) | {statistics.median(first):.1f} s | "
             + ", ".join(f"{s:.1f}" for s in first) + " |",
             f"| again (engine from the cache) | {statistics.median(again):.1f} s | "
             + ", ".join(f"{s:.1f}" for s in again) + " |",
             "", f"{results['environment']['cpu']} ({', '.join(results['environment']['cpu_flags'])}), "
             f"{results['environment']['cpu_threads']} threads; {said}"]
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
