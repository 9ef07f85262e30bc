"""What the INT8 recipe's choices cost and buy: which op inputs stay in floating point, measured.

For each choice of op types whose inputs NNCF leaves unquantized (``stylexport.export.builders.
INT8_FLOAT_INPUT_TYPES``; the first and last convolutions are always floating point), exports the checkpoint to
an INT8 IR through ``stylexport export`` itself (calibrated on the first 32 photos of PHOTO_DIR), measures its
PSNR against torch FP32 on 12 other photos (512 px), and times each IR beside the FP32 IR at 512x512 in
interleaved rounds. Writes RESULTS.json and RESULTS.md.

    python benchmarks/int8_recipe.py CHECKPOINT ../shared/data/photos -o benchmarks/results/int8-recipe.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import stylexport.export.builders as builders
import stylexport.formats as formats
from stylexport.bench import percentiles
from stylexport.bench.environment import environment
from stylexport.checkpoint import load_checkpoint
from stylexport.errors import StylexportError
from stylexport.export import export
from stylexport.image import read_image, resize_max_side
from stylexport.metrics import compare
from stylexport.runtime import open_runner

sys.path.insert(0, str(Path(__file__).parent))
from cpu_engines import photo_split  # noqa: E402 - the sibling script: the same photo split

CHOICES = {"first and last convolutions (the recipe before)": (), "+ instance norm (MVN) inputs": ("MVN",),
           "+ instance norm and residual (Add) inputs": ("MVN", "Add")}


def gate_cell(outcome: str) -> str:
    if outcome == "passed":
        return "passed"
    measured = re.search(r"PSNR [\d.]+ dB", outcome)
    return f"failed ({measured.group(0) if measured else outcome[:60]} < 30 dB on the bundled photo)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("photos")
    ap.add_argument("-o", "--output", default="int8-recipe.json")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--block", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="int8-recipe-"))
    calibration, calibration_dir, held = photo_split(args.photos, work)  # the split of cpu-engines.json
    shipped = builders.INT8_FLOAT_INPUT_TYPES
    irs = {"fp32 (reference speed)": export(args.checkpoint, ["openvino"], work / "fp32")[0].path}
    gate = {}  # each choice's export parity gate (bundled photo, PSNR >= 30 dB): passed, or its message
    for label, types in CHOICES.items():
        builders.INT8_FLOAT_INPUT_TYPES = types
        print(f"exporting: {label}", file=sys.stderr, flush=True)
        out = work / f"int8-{len(types)}"
        try:
            irs[label] = export(args.checkpoint, ["openvino-int8"], out, calibration_dir=calibration_dir)[0].path
            gate[label] = "passed"
        except StylexportError as exc:  # measure it all the same: export it again without the gate
            gate[label] = str(exc)
            strict = formats.FORMATS["openvino-int8"]
            formats.FORMATS["openvino-int8"] = dataclasses.replace(strict, tolerance=formats.Tolerance(min_psnr_db=0))
            try:
                irs[label] = export(args.checkpoint, ["openvino-int8"], out, calibration_dir=calibration_dir)[0].path
            finally:
                formats.FORMATS["openvino-int8"] = strict
    builders.INT8_FLOAT_INPUT_TYPES = shipped

    model = load_checkpoint(args.checkpoint).model.eval()
    images = [resize_max_side(read_image(p), 512)[None] for p in held]
    with torch.no_grad():
        references = [model(x) for x in images]
    runners = {label: open_runner(path, device="cpu") for label, path in irs.items()}
    quality = {}
    for label, runner in runners.items():
        psnr = [compare(runner.infer(x), ref).psnr_db for x, ref in zip(images, references, strict=True)]
        quality[label] = {"min_psnr_db": min(psnr), "median_psnr_db": statistics.median(psnr),
                          "per_photo_db": dict(zip([p.name for p in held], psnr, strict=True))}
    x = resize_max_side(read_image(held[0]), 512)[None]
    x = torch.nn.functional.interpolate(x, size=(512, 512), mode="bilinear").clamp(0, 255)
    times: dict[str, list[float]] = {label: [] for label in runners}
    for runner in runners.values():
        runner.infer(x)
    for r in range(args.rounds):
        order = list(runners)[r % len(runners):] + list(runners)[: r % len(runners)]
        for label in order:
            print(f"timing round {r + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
            for _ in range(args.block):
                t0 = time.perf_counter()
                runners[label].infer(x)
                times[label].append((time.perf_counter() - t0) * 1e3)
    for runner in runners.values():
        runner.close()
    speed = {label: percentiles(t) for label, t in times.items()}
    fp32 = "fp32 (reference speed)"
    rows = [{"choice": label, "float_input_types": list(CHOICES.get(label, ())), "ir": str(irs[label]),
             **quality[label], "time_512": speed[label], "speedup_over_fp32": speed[fp32]["p50_ms"] /
             speed[label]["p50_ms"], "shipped": CHOICES.get(label) == shipped,
             "export_gate": gate.get(label, "passed")} for label in runners]
    results = {"environment": environment(torch.device("cpu")), "checkpoint": args.checkpoint,
               "calibration_photos": [p.name for p in calibration], "quality_photos": [p.name for p in held],
               "how": "PSNR of each IR against torch FP32 on the quality photos (512 px longer side); time: "
                      "OpenVINO FP32 inference precision hint, 512x512, batch 1, interleaved rounds",
               "rows": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    env = results["environment"]
    lines = [f"# INT8 recipe choices, {env['cpu']}, {env['cpu_threads']} threads, OpenVINO {env['openvino']}", "",
             f"`{env['command']}`, {env['date']}; checkpoint `{args.checkpoint}`", "",
             "| floating-point inputs | min PSNR | median PSNR | 512² p50 ms (IQR) | speedup over FP32 | export gate |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        mark = " (shipped)" if row["shipped"] else ""
        lines.append(f"| {row['choice']}{mark} | {row['min_psnr_db']:.1f} dB | {row['median_psnr_db']:.1f} dB | "
                     f"{row['time_512']['p50_ms']:.0f} ({row['time_512']['iqr_ms']:.0f}) | "
                     f"{row['speedup_over_fp32']:.2f} | "
                     f"{gate_cell(row['export_gate'])} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
