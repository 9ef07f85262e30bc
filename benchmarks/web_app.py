"""The exported web app's speed in headless Chromium beside ONNX Runtime and torch in Python, on this CPU.

Exports CHECKPOINT with ``export --web``, serves it on 127.0.0.1, stylizes the bundled photo at each size
REPEATS times through the page on WebAssembly (tests/web/drive.cjs; the page's own model time, one thread:
a plain static server gives no cross-origin isolation, so no WebAssembly threads), and times the same ONNX
model with ONNX Runtime's CPU provider (1 thread and the default) and torch FP32 in this process. Writes
OUTPUT.json/.md and the page's screenshot (OUTPUT-screenshot.png).

    python benchmarks/web_app.py CHECKPOINT -o benchmarks/results/web-app.json
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from stylexport.bench.environment import environment
from stylexport.checkpoint import load_checkpoint
from stylexport.export import export
from stylexport.image import sample_paths
from stylexport.web import TEMPLATE

DRIVER = Path(__file__).resolve().parents[1] / "tests" / "web" / "drive.cjs"


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


def stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"p50_ms": round(statistics.median(times), 1), "p25_ms": round(q[0], 1), "p75_ms": round(q[2], 1),
            "n": len(times)}


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
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(app)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?ep=wasm&size=0"
    model = load_checkpoint(args.checkpoint).model.eval()
    sessions = {"ort-cpu (1 thread)": 1, "ort-cpu (default threads)": 0}
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        image = Image.open(sample_paths()[0]).convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        photo = work / f"photo-{size}.png"
        image.save(photo)
        out = work / f"page-{size}"
        out.mkdir()
        env = {**os.environ, "NODE_PATH": str(TEMPLATE / "node_modules"), "REPEAT": str(args.repeats + 1)}
        subprocess.run(["node", str(DRIVER), url, str(photo), str(out)], env=env, check=True)
        page = json.loads((out / "page.json").read_text())
        times = [float(re.search(r"model ([\d.]+) ms", r).group(1)) for r in page["runs"]][1:]  # first: warm-up
        backend = page["runs"][0].split(" · ")[0]
        x = torch.from_numpy(np.asarray(image, dtype="float32")).permute(2, 0, 1)[None].contiguous()
        measured = {f"browser: {backend}": times}
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
        shutil.copy(out / "screenshot.png", Path(args.output).with_name(Path(args.output).stem + "-screenshot.png"))
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
