"""Memory of an ExecuTorch program against its size bound (``export --executorch --pte-max-side N``).

ExecuTorch plans activation memory for the largest shape a program accepts, so the bound, not the frame, sets
what loading costs. For each bound: export the FP32 program, then in a fresh process load it and run one frame
at 256x256 and one at the bound, reading the resident memory (VmRSS) after each step; the FP32 and the FP16
program of each bound side by side (their file sizes too). Linux x86-64
with ExecuTorch's PyPI build; a phone's allocator and XNNPACK build differ, so treat these as an upper
estimate of the shape of the cost, not a phone measurement.

    python benchmarks/executorch_memory.py CHECKPOINT -o benchmarks/results/executorch-memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from stylexport.bench.environment import environment
from stylexport.export import export

PROBE = """
import json, sys, torch
from stylexport.runtime import open_runner
def mb():  # resident memory now (VmRSS), MiB: ru_maxrss would hide a step below an earlier peak
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) / 1024
steps = {"python_and_torch": mb()}
runner = open_runner(sys.argv[1])
steps["after_load"] = mb()
side = int(sys.argv[2])
runner.infer(torch.rand(1, 3, 256, 256) * 255)
steps["after_256x256"] = mb()
runner.infer(torch.rand(1, 3, side, side) * 255)
steps[f"after_{side}x{side}"] = mb()
print(json.dumps(steps))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("-o", "--output", default="executorch-memory.json")
    ap.add_argument("--bounds", default="512,720,1280")
    ap.add_argument("--formats", default="executorch,executorch-fp16")
    args = ap.parse_args()
    rows = []
    for bound, fmt in ((int(b), f) for b in args.bounds.split(",") for f in args.formats.split(",")):
        out = Path(tempfile.mkdtemp(prefix=f"pte-{bound}-"))
        path = Path(export(args.checkpoint, [fmt], out, pte_max_side=bound)[0].path)
        done = subprocess.run([sys.executable, "-c", PROBE, str(path), str(bound)], capture_output=True, text=True,
                              check=True)
        steps = json.loads(done.stdout.strip().splitlines()[-1])
        base = steps.pop("python_and_torch")
        rows.append({"format": fmt, "max_side": bound, "program_mb": round(path.stat().st_size / 2**20, 1),
                     "python_and_torch_mb": round(base),
                     **{f"{k}_extra_mb": round(v - base) for k, v in steps.items()}})
        print(rows[-1], flush=True)
    result = {"what": "resident memory (VmRSS) above Python+torch+ExecuTorch imports (MiB) of ExecuTorch programs "
                      "(FP32, FP16), by size bound",
              "environment": {**environment(torch.device("cpu")),
                              "command": "python benchmarks/executorch_memory.py " + " ".join(sys.argv[1:])},
              "rows": rows}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
