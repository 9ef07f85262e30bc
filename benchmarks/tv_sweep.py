"""Does the recipes' TV weight (1e-7) blur? `stylexport sweep` over TV weights for two recipes, in one run.

For great_wave (λs 1e5) and ejiri_in_suruga (λs 3e5), the sweep photo of training/sweep_styles.py at the recipe's
geometry (256 px crop, 512 px painting), 50 L-BFGS iterations, λtv 1e-8, 3e-8, 1e-7, 3e-7: the sheets go to
docs/img/sweeps/tv-NAME.jpg (each tile's loss terms in the JSON beside it), and
benchmarks/results/tv-sweep.json gathers every tile's terms with the machine, the versions and the commands.

    python benchmarks/tv_sweep.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from stylexport.bench.environment import environment

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "photos" / "gcompris_chateau_de_chenonceau.jpg"  # sweep_styles.py's
TV_WEIGHTS = "1e-8,3e-8,1e-7,3e-7"


def main() -> None:
    runs = []
    for name in ("great_wave", "ejiri_in_suruga"):
        recipe = json.loads((ROOT / "training" / "styles" / f"{name}.json").read_text())
        sheet = ROOT / "docs" / "img" / "sweeps" / f"tv-{name}.jpg"
        cmd = [sys.executable, "-m", "stylexport", "sweep", str(PHOTO), str((ROOT / recipe["style"]).resolve()),
               "--style-weights", f"{recipe['style_weight']:g}", "--tv-weights", TV_WEIGHTS,
               "--size", str(recipe.get("image_size", 256)), "--style-size", str(recipe.get("style_size", 512)),
               "--iterations", "50", "-o", str(sheet)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        tiles = json.loads(sheet.with_suffix(".json").read_text())["tiles"]
        by_tv = {f"{t['tv_weight']:g}": {k: t[k] for k in ("total", "content", "style", "tv")} for t in tiles}
        runs.append({"style": name, "command": " ".join(["python", *cmd[1:]]), "sheet": str(sheet.relative_to(ROOT)),
                     "by_tv_weight": by_tv,
                     "style_term_1e-7_over_1e-8": by_tv["1e-07"]["style"] / by_tv["1e-08"]["style"]})
        print(f"{name}: style term at 1e-7 is {runs[-1]['style_term_1e-7_over_1e-8']:.1f}x that at 1e-8", flush=True)
    out = {"what": "Gatys sweeps over the TV weight at two recipes' geometry and style weights (loss terms per tile)",
           "command": " ".join(["python", *sys.argv]), "environment": environment(torch.device("cpu")), "runs": runs}
    path = ROOT / "benchmarks" / "results" / "tv-sweep.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
