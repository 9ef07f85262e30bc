"""The CPU training step in both memory layouts, contiguous (NCHW) and channels_last (NHWC), side by side.

`stylexport train` puts the network and its batches in channels_last on every device (it once did on CUDA only).
This times the training step (forward, VGG16 loss, backward, Adam) at 256x256, batch 4, in FP32 and, where the
CPU computes BF16 natively, under BF16 autocast, each in both layouts, all four in alternating blocks
(``stylexport.bench.run.training_throughput``), so drift on a shared machine cannot favour one.

    python benchmarks/cpu_train_layout.py -o benchmarks/results/cpu-train-layout-<cpu>.json

Writes OUTPUT.json (the environment: CPU, its flags, library versions; the command; every block) and OUTPUT.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from stylexport.bench.environment import environment
from stylexport.bench.run import training_throughput
from stylexport.fileio import write_text_atomic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default="cpu-train-layout.json")
    ap.add_argument("--steps", type=int, default=24, help="timed steps per precision and layout")
    ap.add_argument("--block", type=int, default=4, help="steps per block; the four runs alternate by block")
    args = ap.parse_args()
    cpu = torch.device("cpu")
    print("timing training steps: FP32 and BF16, contiguous and channels_last, in alternating blocks",
          file=sys.stderr, flush=True)
    rows = training_throughput(cpu, batches=(4,), steps=args.steps, size=256, block=args.block,
                               channels_last=(False, True))
    by = {(r["amp"], r["channels_last"]): r for r in rows}
    results = {"environment": environment(cpu), "rows": rows,
               "channels_last_speedup": {amp: by[amp, True]["images_per_second"] / by[amp, False]["images_per_second"]
                                         for amp in {r["amp"] for r in rows}}}
    out = Path(args.output)
    write_text_atomic(out, json.dumps(results, indent=2) + "\n")
    lines = [f"Training step, 256x256, batch 4, on {results['environment']['cpu']} "
             f"({args.steps} steps each, blocks of {args.block}, alternating)", "",
             "| precision | layout | images/s | its blocks | channels_last / contiguous |", "|---|---|---|---|---|"]
    for r in rows:
        blocks = r["block_images_per_second"]
        ratio = r["images_per_second"] / by[r["amp"], False]["images_per_second"]
        lines.append(f"| {'BF16 autocast' if r['amp'] == 'bf16' else 'FP32'} | "
                     f"{'channels_last' if r['channels_last'] else 'contiguous'} | {r['images_per_second']:.2f} | "
                     f"{min(blocks):.2f}-{max(blocks):.2f} | {ratio:.2f} |")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
