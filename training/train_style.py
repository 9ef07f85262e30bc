"""Train one style from its recipe: ``python training/train_style.py training/styles/starry_night.json RUN_DIR``.

A recipe is a JSON file of `stylexport train` options; paths in it are relative to the repository root.
Any option given after RUN_DIR overrides the recipe (e.g. ``--data /data/coco/train2014 --epochs 2``). The
recipe's ``steps`` and ``epochs`` are one choice, how long to train: ``--epochs`` or ``--steps`` given after
RUN_DIR replaces both (the recipe's steps would otherwise override a given ``--epochs``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LENGTH = ("steps", "epochs")  # how long to train: one choice (stylexport train's --steps overrides --epochs)


def recipe_args(recipe: Path, *, leave_out: tuple[str, ...] = ()) -> list[str]:
    args = []
    for key, value in json.loads(recipe.read_text()).items():
        if key in leave_out:
            continue
        if key in ("style", "data"):
            value = str((ROOT / value).resolve())
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def command_args(recipe: Path, run_dir: str, extra: list[str]) -> list[str]:
    """`stylexport train`'s arguments: the recipe's options, the run folder, then the options given after it."""
    given = {arg.removeprefix("--").split("=")[0].replace("-", "_") for arg in extra if arg.startswith("--")}
    return [*recipe_args(recipe, leave_out=LENGTH if given & set(LENGTH) else ()), "-o", run_dir, *extra]


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    recipe, run_dir, *extra = sys.argv[1:]
    cmd = [sys.executable, "-m", "stylexport", "train", *command_args(Path(recipe), run_dir, extra)]
    print(" ".join(cmd), flush=True)
    # this process becomes the training: a SIGTERM or Ctrl-C sent to its pid stops the run after its step with
    # a checkpoint (a child left running would go on training, alone, into the same folder)
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
