"""The C++ host's OpenVINO backend beside Python's, on the same IRs and photo, in one interleaved run.

Exports CHECKPOINT (default: random weights, seed 0: timing only) to OpenVINO FP32 and INT8 IRs, builds the C++
host without libtorch (``stylexport engines build --no-aoti``), and at each size times, in alternating blocks,
the C++ ``stylize`` program (its own ``--repeat`` loop, so process start-up and compilation are not in the
times) and Python's ``Stylizer`` on a uint8 numpy array: both uint8 RGB HWC in host memory to uint8 back, the
same IR, the same OpenVINO. Also compares their pixels. Writes RESULTS.json and RESULTS.md.

    python benchmarks/cpp_openvino.py [CHECKPOINT] -o benchmarks/results/cpp-openvino.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylexport import Stylizer
from stylexport.bench import parse_size, percentiles
from stylexport.bench.environment import environment
from stylexport.checkpoint import save_checkpoint
from stylexport.engines import build
from stylexport.export import export
from stylexport.image import read_image, sample_paths
from stylexport.model import TransformerNet


def photo(h: int, w: int) -> np.ndarray:
    """The bundled photo, resized to cover HxW and centre-cropped: uint8 RGB HWC."""
    image = read_image(sample_paths()[0])
    scale = max(h / image.shape[1], w / image.shape[2])
    size = [max(h, round(image.shape[1] * scale)), max(w, round(image.shape[2] * scale))]
    image = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    return image[:, top:top + h, left:left + w].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("-o", "--output", default="cpp-openvino.json")
    ap.add_argument("--sizes", default="512,720p")
    ap.add_argument("--rounds", type=int, default=3, help="alternating C++/Python blocks per engine and size")
    ap.add_argument("--block", type=int, default=5, help="timed calls per block")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cpp-openvino-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        checkpoint = save_checkpoint(work / "random.safetensors", TransformerNet().eval(), {"style_name": "random"})
    reports = {r.format: Path(r.path) for r in export(checkpoint, ["openvino", "openvino-int8"], work / "exported")}
    irs = {"openvino-fp32": reports["openvino"], "openvino-int8": reports["openvino-int8"]}
    started = time.perf_counter()
    program = build(work / "host", aoti=False, openvino=True)
    build_seconds = time.perf_counter() - started
    linked = subprocess.run(["ldd", str(program)], capture_output=True, text=True).stdout

    rows = []
    for size in args.sizes.split(","):
        h, w = parse_size(size)
        image = photo(h, w)
        src = work / f"photo-{h}x{w}.png"
        Image.fromarray(image).save(src)
        for name, ir in irs.items():
            times: dict[str, list[float]] = {"cpp": [], "python": []}
            outputs = {}
            with Stylizer(ir) as stylizer:
                stylizer(image)  # warm-up (compiled at open)
                for r in range(args.rounds):
                    for host in (("cpp", "python") if r % 2 == 0 else ("python", "cpp")):
                        print(f"{size} {name} round {r + 1}/{args.rounds}: {host}", file=sys.stderr, flush=True)
                        if host == "cpp":
                            out = work / "cpp.png"
                            result = subprocess.run([str(program), str(ir), str(src), str(out), "--warmup", "1",
                                                     "--repeat", str(args.block), "--json"],
                                                    capture_output=True, text=True, check=True)
                            times["cpp"] += json.loads(result.stdout)["times_ms"]
                            outputs["cpp"] = np.asarray(Image.open(out).convert("RGB"))
                        else:
                            for _ in range(args.block):
                                t0 = time.perf_counter()
                                outputs["python"] = stylizer(image)
                                times["python"].append((time.perf_counter() - t0) * 1e3)
            diff = np.abs(outputs["cpp"].astype(np.int16) - outputs["python"].astype(np.int16))
            cpp, python = percentiles(times["cpp"]), percentiles(times["python"])
            rows.append({"engine": name, "height": h, "width": w, "cpp": cpp, "python": python,
                         "python_over_cpp_p50": python["p50_ms"] / cpp["p50_ms"],
                         "pixels_max_abs_diff": int(diff.max()), "pixels_differing": int((diff > 0).sum())})
    results = {"environment": environment(torch.device("cpu")), "checkpoint": str(args.checkpoint or
                                                                                    "random weights (seed 0)"),
               "rounds": args.rounds, "block": args.block,
               "host": {"build": "stylexport engines build --no-aoti", "build_seconds": build_seconds,
                        "program_bytes": program.stat().st_size,
                        "links_libtorch": "libtorch" in linked or "libc10" in linked,
                        "links_openvino": "libopenvino" in linked},
               "how": "end to end per image, uint8 RGB HWC in host memory to uint8 back: C++ stylize's --repeat "
                      "loop (times_ms) and Python Stylizer calls on a numpy array, in alternating blocks",
               "results": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    env = results["environment"]
    lines = [f"# C++ host (OpenVINO backend, no libtorch) beside Python, {env['cpu']}, {env['cpu_threads']} threads",
             "", f"OpenVINO {env['openvino']}, stylexport {env['stylexport']}, {env['date']}; "
             f"`{env['command']}`", "",
             "| engine | size | C++ p50 ms (IQR) | Python p50 ms (IQR) | Python / C++ | pixels |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        same = "identical" if r["pixels_max_abs_diff"] == 0 else \
            f"{r['pixels_differing']} differ, max {r['pixels_max_abs_diff']}"
        lines.append(f"| {r['engine']} | {r['height']}x{r['width']} | {r['cpp']['p50_ms']:.1f} "
                     f"({r['cpp']['iqr_ms']:.1f}) | {r['python']['p50_ms']:.1f} ({r['python']['iqr_ms']:.1f}) | "
                     f"{r['python_over_cpp_p50']:.3f} | {same} |")
    host = results["host"]
    lines += ["", f"Host: {host['program_bytes'] / 1e3:.0f} KB program, links libtorch: {host['links_libtorch']}, "
              f"built in {host['build_seconds']:.0f} s."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
