"""The C++ host (engines/cpp) timing an AOTInductor package with its own --repeat clock, pixels compared with
Python's runner of the same package, photo sizes side by side; one results JSON.

    python benchmarks/gpu/cpp_host.py CHECKPOINT --format aoti-cuda-fp16 --build BUILD_DIR -o results.json

Used by first_light.py on the GPU machine (aoti-cuda-fp16) and runnable on a CPU (aoti-cpu).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylexport.bench import parse_size
from stylexport.bench.environment import environment
from stylexport.bench.timing import photo
from stylexport.engines import build
from stylexport.export import export
from stylexport.image import read_image, save_image
from stylexport.runtime import open_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--format", default="aoti-cuda-fp16", choices=("aoti-cuda-fp16", "aoti-cpu"))
    parser.add_argument("--build", type=Path, required=True, help="CMake build folder for engines/cpp")
    parser.add_argument("--sizes", default="512,1080p")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()

    device = torch.device("cuda" if args.format == "aoti-cuda-fp16" else "cpu")
    work = Path(tempfile.mkdtemp(prefix="cpp-host-"))
    (report,) = export(args.checkpoint, [args.format], work)
    if not report.passed:
        sys.exit(f"the {args.format} package failed its parity gate: {report.parity}")
    program = build(args.build)
    runner = open_runner(report.path, device=device)
    rows = []
    for spec in args.sizes.split(","):
        h, w = parse_size(spec)
        src, out = work / f"photo-{h}x{w}.png", work / f"out-{h}x{w}.png"
        save_image(photo(h, w, seed=1)[0], src)
        done = subprocess.run([str(program), report.path, str(src), str(out), "--warmup", str(args.warmup),
                               "--repeat", str(args.repeat), "--json"], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            rows.append({"height": h, "width": w, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        summary = json.loads(done.stdout)
        cpp = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
        y = runner.infer(read_image(src)[None].to(device))[0].clamp(0, 255).round().to(torch.uint8)
        python = y.permute(1, 2, 0).cpu().numpy().astype(np.int16)
        diff = np.abs(cpp - python)
        rows.append({"height": h, "width": w, "backend": summary["backend"], "warmup": args.warmup,
                     "repeat": args.repeat, "end_to_end_p50_ms": summary["p50_ms"],
                     "end_to_end_p95_ms": summary["p95_ms"], "fps": summary["fps"],
                     "max_abs_diff_vs_python": int(diff.max()), "pixels_off_by_more_than_1": int((diff > 1).sum())})
    result = {"environment": environment(device), "format": args.format, "package_bytes": report.size_bytes,
              "export_parity": report.parity, "what": "C++ host (engines/cpp stylize): PNG decoded once, then "
              "--repeat timed runs of host uint8 -> engine -> host uint8 (its own steady_clock), p50/p95; pixels "
              "compared with Python's runner of the same package", "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
