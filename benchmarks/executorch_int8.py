"""ExecuTorch's dynamic INT8 program beside its FP32 one (the phone formats), with torch FP32 and OpenVINO FP32
for scale, in one interleaved run on this CPU; each program's PSNR against torch FP32 on real photos and its
file size, and the INT8 recipe before (every convolution quantized, the first and last too) for its quality and
size. Writes RESULTS.json/.md/.png.

    python benchmarks/executorch_int8.py CHECKPOINT PHOTO_DIR -o benchmarks/results/executorch-int8.json

The photos are those cpu_engines.py judges quality on (the second half of the folder); dynamic INT8 needs no
calibration, so none of them is seen before it is judged. A phone's ARM cores are not this x86 CPU: the
timings say how the programs compare here, and the sizes and PSNR hold anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from stylexport.bench import BenchConfig, run, write_results
from stylexport.checkpoint import load_checkpoint
from stylexport.export import export
from stylexport.formats import FORMATS as FORMATS_TABLE
from stylexport.image import read_image, resize_max_side
from stylexport.metrics import compare
from stylexport.runtime import open_runner

sys.path.insert(0, str(Path(__file__).parent))
from cpu_engines import photo_split  # noqa: E402 - the same photo split as the other CPU results files

ENGINES = ("torch-fp32", "openvino-fp32", "executorch-fp32", "executorch-int8")
FORMATS = ("openvino", "executorch", "executorch-int8")
EVERY_CONV = "executorch-int8, every conv INT8 (the recipe before; not timed)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("photos")
    ap.add_argument("-o", "--output", default="executorch-int8.json")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--max-side", type=int, default=512, help="the programs' --pte-max-side")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="executorch-int8-"))
    _, _, held = photo_split(args.photos, work)
    exported = work / "exported"
    reports = export(args.checkpoint, list(FORMATS), exported, pte_max_side=args.max_side)
    config = BenchConfig(backends=ENGINES, sizes=((256, 256), (512, 512)), repeats=args.repeats,
                         block=min(5, args.repeats), warmup=2, device="cpu", exported=str(exported))
    results = run(args.checkpoint, config,
                  progress=lambda what, done, total: print(f"{done}/{total} {what}", file=sys.stderr, flush=True))
    model = load_checkpoint(args.checkpoint).model.eval()
    images = [resize_max_side(read_image(p), args.max_side)[None] for p in held]
    with torch.no_grad():
        refs = [model(x) for x in images]
    files = {r.format: Path(r.path) for r in reports}

    def judged(path: Path, engine: str, file_bytes: int) -> dict:
        with open_runner(path, engine=engine, device="cpu") as r:
            psnr = [compare(r.infer(x).float().cpu(), ref).psnr_db for x, ref in zip(images, refs, strict=True)]
        return {"min_psnr_db": min(psnr), "median_psnr_db": statistics.median(psnr), "photos": len(psnr),
                "file_bytes": file_bytes}

    quality = {engine: judged(files[fmt], engine, FORMATS_TABLE[fmt].size(files[fmt]))  # an IR's .bin too
               for engine, fmt in (("openvino-fp32", "openvino"), ("executorch-fp32", "executorch"),
                                   ("executorch-int8", "executorch-int8"))}
    # The recipe before (every convolution INT8, the first and last too): quality and size only, beside it.
    from stylexport.export.executorch import lower_program

    before = work / "every-conv.int8.pte"
    before.write_bytes(lower_program(model, int8=True, max_side=args.max_side, int8_ends_in_fp32=False))
    quality[EVERY_CONV] = {**judged(before, "executorch-int8", before.stat().st_size), "timed": False}
    results["quality_real_photos"] = {"photos": [p.name for p in held], "reference": "torch-fp32",
                                      "longer_side": args.max_side, **quality}
    results["export"] = [{"format": r.format, "parity": r.parity, "seconds": r.build_seconds} for r in reports]
    paths = write_results(results, args.output)
    md = Path(paths[1])
    lines = ["", f"Quality on {len(held)} real photos (PSNR vs torch-fp32, {args.max_side} px longer side) and "
             "file size:", "", "| engine | min PSNR | median PSNR | file |", "|---|---|---|---|"]
    for name, q in quality.items():
        lines.append(f"| {name} | {q['min_psnr_db']:.1f} dB | {q['median_psnr_db']:.1f} dB | "
                     f"{q['file_bytes'] / 1e6:.2f} MB |")
    md.write_text(md.read_text() + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
