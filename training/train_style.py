"""Train one style from its recipe: ``python training/train_style.py training/styles/starry_night.json RUN_DIR``.

A recipe is a JSON file of `stylexport train` options; paths in it are relative to the repository root.
Any option given after RUN_DIR overrides the recipe (e.g. ``--data /data/coco/train2014 --epochs 2``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def recipe_args(recipe: Path) -> list[str]:
    args = []
    for key, value in json.loads(recipe.read_text()).items():
        if key in ("style", "data"):
            value = str((ROOT / value).resolve())
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    recipe, run_dir, *extra = sys.argv[1:]
    cmd = [sys.executable, "-m", "stylexport", "train", *recipe_args(Path(recipe)), "-o", run_dir, *extra]
    print(" ".join(cmd), flush=True)
    # this process becomes the training: a SIGTERM or Ctrl-C sent to its pid stops the run after its step with
    # a checkpoint (a child left running would go on training, alone, into the same folder)
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
