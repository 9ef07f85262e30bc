"""The exported web app's speed in headless Chromium beside ONNX Runtime and torch in Python, on this CPU.

Exports CHECKPOINT with ``export --web``, serves it on 127.0.0.1 twice (``stylexport serve``'s server: once
cross-origin isolated, so the page runs WebAssembly threads, once without the headers, as a plain static server
does: one thread), stylizes the bundled photo at each size REPEATS times through each page on WebAssembly
(tests/web/drive.cjs; the page's own model time), and times the same ONNX model with ONNX Runtime's CPU
provider (1 thread and the default) and torch FP32 in this process. Writes
OUTPUT.json/.md and the page's screenshot (OUTPUT-screenshot.png).

    python benchmarks/web_app.py CHECKPOINT -o benchmarks/results/web-app.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from stylexport.bench.environment import environment
from stylexport.bench.timing import percentiles
from stylexport.checkpoint import load_checkpoint
from stylexport.export import export
from stylexport.image import sample_paths
from stylexport.web import TEMPLATE
from stylexport.web.server import start_server

DRIVER = Path(__file__).resolve().parents[1] / "tests" / "web" / "drive.cjs"


def stats(times: list[float]) -> dict[str, float]:
    """The bench harness's percentiles (numpy's interpolation), rounded for the table."""
    summary = percentiles(times)
    return {key: round(summary[key], 1) for key in ("p50_ms", "p25_ms", "p75_ms")} | {"n": summary["n"]}


def time_python(call, x: torch.Tensor, repeats: int) -> list[float]:
    call(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(x)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("-o", "--output", default="web-app.json")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="web-app-"))
    app = work / "app"
    export(args.checkpoint, ["web"], app)
    servers = [start_server(app, isolated=isolated) for isolated in (True, False)]
    model = load_checkpoint(args.checkpoint).model.eval()
    sessions = {"ort-cpu (1 thread)": 1, "ort-cpu (default threads)": 0}
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        image = Image.open(sample_paths()[0]).convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        photo = work / f"photo-{size}.png"
        image.save(photo)
        measured = {}
        for _, url in servers:
            out = Path(tempfile.mkdtemp(prefix=f"page-{size}-", dir=work))
            env = {**os.environ, "NODE_PATH": str(TEMPLATE / "node_modules"), "REPEAT": str(args.repeats + 1)}
            subprocess.run(["node", str(DRIVER), f"{url}?ep=wasm&size=0", str(photo), str(out)], env=env, check=True)
            page = json.loads((out / "page.json").read_text())
            times = [float(re.search(r"model ([\d.]+) ms", r).group(1)) for r in page["runs"]][1:]  # 1st: warm-up
            isolation = "isolated" if page["isolated"] else "not isolated"
            measured[f"browser: {page['runs'][0].split(' · ')[0]}, {isolation}"] = times
            if page["isolated"]:  # the page as stylexport serve shows it
                shot = Path(args.output).with_name(f"{Path(args.output).stem}-screenshot.png")
                shutil.copy(out / "screenshot.png", shot)
        x = torch.from_numpy(np.asarray(image, dtype="float32")).permute(2, 0, 1)[None].contiguous()
        for label, threads in sessions.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(app / "model.onnx"), options, providers=["CPUExecutionProvider"])
            measured[label] = time_python(lambda t, s=session: s.run(None, {"image": t.numpy()}), x, args.repeats)
        with torch.inference_mode():
            measured["torch-fp32 (default threads)"] = time_python(model, x, args.repeats)
        base = statistics.median(measured["ort-cpu (1 thread)"])
        for label, t in measured.items():
            rows.append({"size": f"{x.shape[2]}x{x.shape[3]}", "engine": label, **stats(t),
                         "vs_ort_1_thread": round(statistics.median(t) / base, 2)})
    for server, _ in servers:
        server.shutdown()
    result = {"what": "exported web app (ONNX Runtime Web, WebAssembly) in headless Chromium vs Python engines, "
                      "same ONNX model, same photo; times are model run only (no pixel conversion)",
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "checkpoint": str(args.checkpoint),
              "chromium": subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True,
                                         text=True).stdout.strip(),
              "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
              "onnxruntime_web": json.loads((app / "model.json").read_text())["onnxruntime_web_version"],
              "onnxruntime": ort.__version__, "environment": environment(torch.device("cpu")), "rows": rows}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| size | engine | p50 ms | p25-p75 ms | n | time vs ORT 1 thread |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['engine']} | {r['p50_ms']} | {r['p25_ms']}-{r['p75_ms']} | {r['n']} | "
              f"{r['vs_ort_1_thread']}x |" for r in rows]
    Path(args.output).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
