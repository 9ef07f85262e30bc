"""The CPU engines side by side (issue: OpenVINO, BF16 and INT8 engines with a quality gate).

Exports a trained checkpoint to ONNX, OpenVINO FP32 and OpenVINO INT8 (calibrated on photos), times every CPU
engine in one interleaved run (``stylexport bench --exported``), and measures each engine's PSNR against
torch FP32 on real photos that were not used for calibration. Writes RESULTS.json/.md/.png.

    python benchmarks/cpu_engines.py CHECKPOINT PHOTO_DIR -o benchmarks/results/cpu-engines.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from stylexport.bench import BenchConfig, run, write_results
from stylexport.bench.report import speedups
from stylexport.checkpoint import load_checkpoint
from stylexport.export import export
from stylexport.image import find_images, read_image, resize_max_side
from stylexport.metrics import compare
from stylexport.runtime import open_runner

ENGINES = ("torch-fp32", "torch-bf16", "ort-cpu", "openvino-fp32", "openvino-bf16", "openvino-int8")
TARGETS = {"best FP engine >= 3.5x, PSNR >= 45 dB": (3.5, 45.0), "INT8 >= 5x, PSNR >= 38 dB": (5.0, 38.0)}


def photo_split(folder: str | Path, work: Path, *, quality: int = 12, calibration: int = 32):
    """The split every CPU-engine results file uses: INT8 calibration on up to ``calibration`` photos of the
    folder's first half (linked into ``work/calibration``), quality judged on ``quality`` photos of its second
    half. Returns (calibration photos, their folder, quality photos)."""
    photos = find_images([folder])
    calib, held = photos[: len(photos) // 2][:calibration], photos[len(photos) // 2:][:quality]
    calib_dir = work / "calibration"
    calib_dir.mkdir()
    for p in calib:
        (calib_dir / p.name).symlink_to(p.resolve())
    return calib, calib_dir, held


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("photos")
    ap.add_argument("-o", "--output", default="cpu-engines.json")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--quality-photos", type=int, default=12)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cpu-engines-"))
    calib, calib_dir, held = photo_split(args.photos, work, quality=args.quality_photos)
    exported = work / "exported"
    export(args.checkpoint, ["onnx", "openvino", "openvino-int8"], exported, calibration_dir=calib_dir)
    config = BenchConfig(backends=ENGINES, sizes=((512, 512), (720, 1280)), repeats=args.repeats,
                         block=min(5, args.repeats), warmup=2, device="cpu", exported=str(exported))
    results = run(args.checkpoint, config,
                  progress=lambda what, done, total: print(f"{done}/{total} {what}", file=sys.stderr, flush=True))
    # quality on real photos held out of calibration, 512 px longer side, against torch FP32
    model = load_checkpoint(args.checkpoint).model.eval()
    images = [resize_max_side(read_image(p), 512)[None] for p in held]
    with torch.no_grad():
        refs = [model(x) for x in images]
    files = {"torch-fp32": args.checkpoint, "torch-bf16": args.checkpoint, "ort-cpu": next(exported.glob("*.onnx")),
             "openvino-fp32": next(p for p in exported.glob("*.xml") if not p.name.endswith(".int8.xml")),
             "openvino-bf16": next(p for p in exported.glob("*.xml") if not p.name.endswith(".int8.xml")),
             "openvino-int8": next(exported.glob("*.int8.xml"))}
    quality = {}
    for name in ENGINES:
        if name in results["skipped"]:
            continue
        with open_runner(files[name], engine=name, device="cpu") as r:
            psnr = [compare(r.infer(x).float().cpu(), ref).psnr_db for x, ref in zip(images, refs, strict=True)]
        finite = [p for p in psnr if p != float("inf")]
        quality[name] = {"min_psnr_db": min(psnr), "median_psnr_db": statistics.median(psnr) if finite else None,
                         "photos": len(psnr)}
    results["quality_real_photos"] = {"photos": [p.name for p in held], "reference": "torch-fp32", **quality}
    results["calibration_photos"] = [p.name for p in calib]
    ups = speedups(results)
    verdicts = {}
    for label, (need_x, need_db) in TARGETS.items():
        pool = [n for n in quality if n != "torch-fp32" and (("int8" in n) == label.startswith("INT8"))]
        rows = []
        for size in ((512, 512), (720, 1280)):
            best = max(pool, key=lambda n: ups.get((n, *size, 1), 0.0), default=None)
            x = ups.get((best, *size, 1)) if best else None
            db = quality[best]["min_psnr_db"] if best else None
            rows.append({"size": f"{size[0]}x{size[1]}", "engine": best, "speedup": x, "min_psnr_db": db,
                         "met": bool(x and db and x >= need_x and db >= need_db)})
        verdicts[label] = rows
    results["targets"] = verdicts
    paths = write_results(results, args.output)
    md = Path(paths[1])
    lines = ["", "Quality on real photos (PSNR vs torch-fp32, 512 px, photos not used for calibration):", "",
             "| engine | min PSNR | median PSNR |", "|---|---|---|"]
    for name, q in quality.items():
        med = q["median_psnr_db"]
        lines.append(f"| {name} | {q['min_psnr_db']:.1f} dB | {'exact' if med is None else f'{med:.1f} dB'} |")
    lines += ["", "Targets (speedup over torch-fp32 in this run, quality as above):", ""]
    for label, rows in verdicts.items():
        for r in rows:
            sp = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
            db = f"{r['min_psnr_db']:.1f} dB" if r["min_psnr_db"] is not None else "-"
            lines.append(f"- {label} at {r['size']}: {r['engine']} {sp}, {db}: {'met' if r['met'] else 'NOT met'}")
    md.write_text(md.read_text() + "\n".join(lines) + "\n")
    print(json.dumps(verdicts, indent=2))


if __name__ == "__main__":
    main()
