"""Why the old main job painted a mesh: the size of each style layer's Gram term on the bundled pair.

Writes benchmarks/results/gatys-layer-terms.json: the mean squared Gram difference between the bundled photo and
painting at each style layer (normalised VGG features, as the loss sees them), at 256 and 512 px, with equal
weights and with the gatys defaults (stylexport.cli.GATYS_LAYER_WEIGHTS).

    python benchmarks/gatys_layer_terms.py
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path

import torch

from stylexport import __version__
from stylexport.cli import GATYS_LAYER_WEIGHTS
from stylexport.image import read_image, resize_max_side, sample_paths
from stylexport.losses import STYLE_LAYERS, gram_matrix
from stylexport.vgg import load_vgg


def main() -> None:
    vgg = load_vgg("offline")
    weights = [float(v) for v in GATYS_LAYER_WEIGHTS.split(",")]
    rows = []
    for size in (256, 512):
        photo, painting = (resize_max_side(read_image(p), size)[None] for p in sample_paths())
        with torch.no_grad():
            fp, fs = vgg(photo, STYLE_LAYERS), vgg(painting, STYLE_LAYERS)
        terms = [float(((gram_matrix(fp[k]) - gram_matrix(fs[k])) ** 2).mean()) for k in STYLE_LAYERS]
        weighted = [w * t for w, t in zip(weights, terms, strict=True)]
        rows.append({"size": size, "terms": dict(zip(STYLE_LAYERS, terms, strict=True)),
                     "equal_weights_share": {k: t / sum(terms) for k, t in zip(STYLE_LAYERS, terms, strict=True)},
                     "relu1_2_over_relu4_3": terms[0] / terms[-1],
                     "default_weights": weights,
                     "default_weights_share": {k: t / sum(weighted)
                                               for k, t in zip(STYLE_LAYERS, weighted, strict=True)}})
    out = {"what": "mean squared Gram difference, bundled photo vs bundled painting, per style layer",
           "command": " ".join(["python", *sys.argv]), "date": datetime.datetime.now(datetime.UTC).isoformat(),
           "stylexport": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "vgg": vgg.describe(), "rows": rows}
    path = Path(__file__).parent / "results" / "gatys-layer-terms.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        share = ", ".join(f"{k} {v:.0%}" for k, v in r["equal_weights_share"].items())
        new = ", ".join(f"{k} {v:.0%}" for k, v in r["default_weights_share"].items())
        print(f"{r['size']} px: equal weights {share} (relu1_2/relu4_3 = {r['relu1_2_over_relu4_3']:.0f}); "
              f"defaults {new}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
