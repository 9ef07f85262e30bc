"""Memory of an animated GIF as ``stylexport video -o clip.gif`` writes it (``video._to_gif``): every frame is
held, quantized to a 256-colour palette (one byte a pixel), until Pillow writes the file, and the writer makes
its own copies as it goes. This measures both, per pixel of all frames, to ground ``video.GIF_BYTES_PER_PIXEL``.

Each case runs in a fresh process: frames that all differ (a noisy picture shifted a few pixels a frame, as a
moving clip) are quantized with the same Pillow calls as ``_to_gif``, then saved; resident memory (VmRSS) is read
before the frames and after them, and the peak (VmHWM, reset through /proc/self/clear_refs just before) after the
save. Linux only.

    python benchmarks/gif_memory.py -o benchmarks/results/gif-memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from stylexport.bench.environment import environment

PROBE = """
import json, sys, tempfile
import numpy as np
from PIL import Image
def mib(field="VmRSS"):  # resident memory now (VmRSS), or its peak (VmHWM), MiB
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields[field].split()[0]) / 1024
def hwm():
    return mib("VmHWM")
n, w, h = map(int, sys.argv[1:4])
base = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
before = mib()
frames = [Image.fromarray(np.roll(base, 3 * i, axis=1)).quantize(256, dither=Image.Dither.FLOYDSTEINBERG)
          for i in range(n)]
held = mib()
quantize_peak = hwm()
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to now: the save's own peak follows
    f.write("5")
with tempfile.NamedTemporaryFile(suffix=".gif") as tmp:
    frames[0].save(tmp.name, format="GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
print(json.dumps({"before_mib": before, "held_mib": held, "save_peak_mib": hwm(), "quantize_peak_mib": quantize_peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default="gif-memory.json")
    ap.add_argument("--cases", default="120x640x480,240x640x480,60x1280x720,120x1280x720",
                    help="FRAMESxWIDTHxHEIGHT, comma-separated")
    args = ap.parse_args()
    rows = []
    for case in args.cases.split(","):
        n, w, h = (int(v) for v in case.split("x"))
        done = subprocess.run([sys.executable, "-c", PROBE, str(n), str(w), str(h)], capture_output=True, text=True,
                              check=True)
        m = json.loads(done.stdout.strip().splitlines()[-1])
        pixels = n * w * h
        rows.append({"frames": n, "width": w, "height": h, "frames_mib": round(pixels / 2**20, 1),
                     "held_bytes_per_pixel": round((m["held_mib"] - m["before_mib"]) * 2**20 / pixels, 2),
                     "save_peak_bytes_per_pixel": round((m["save_peak_mib"] - m["before_mib"]) * 2**20 / pixels, 2),
                     "quantize_transient_mib": round(m["quantize_peak_mib"] - m["held_mib"])})
        print(rows[-1], flush=True)
    import PIL

    result = {"what": "memory of writing an animated GIF the way stylexport video does, in bytes per pixel of all "
                      "frames above the process before the frames: held (the quantized frames) and the peak during "
                      "Pillow's save (VmHWM reset before it); and the transient of quantizing one frame (MiB above "
                      "the held frames at the peak before the save: constant, not per frame)",
              "environment": {**environment(torch.device("cpu")), "pillow": PIL.__version__,
                              "command": "python benchmarks/gif_memory.py " + " ".join(sys.argv[1:])},
              "rows": rows}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
