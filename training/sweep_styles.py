"""Choose each recipe's loss weights the paper's way, before GPU time goes to training (issue #20).

    python training/sweep_styles.py [NAME ...] [--photo P] [--weights 1e5,3e5,1e6,3e6] [--out docs/img/sweeps]

For each recipe in training/styles/ (or those named): `stylexport sweep` of one photo with the recipe's
painting over a grid of style weights (columns) and style-layer weightings (rows), with the recipe's own
geometry (the photo at the recipe's crop size, the painting at its style size: the texture scale the network
will learn) and its TV weight. Writes OUT/NAME.jpg (the labelled sheet), OUT/NAME.json (settings and every
tile's loss terms) and OUT/inputs.jpg (the photo and the paintings). Runs on a CPU: about 40 s per tile on 2
cores at 256 px.

The weights are then chosen by eye (the strongest stylization that keeps the photo's objects readable, without
a fine mesh) and written into the recipe; docs/zoo.md records the choices.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "training" / "styles"
# Public domain (Alf van Beem, via GCompris; ../shared/data/MANIFEST.tsv): safe to commit stylized.
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "photos" / "gcompris_chateau_de_chenonceau.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="recipe names (default: every recipe)")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--weights", default="1e5,3e5,1e6,3e6", help="style weights (columns)")
    parser.add_argument("--layer-weights", default="1,1,1,1;0.01,0.1,1,1",
                        help="sets of style-layer weights (rows): the paper's equal weights, and the main job's "
                        "rebalancing (docs/gatys.md: with equal weights relu1_2 dominates and paints a mesh)")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "sweeps")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in RECIPES.glob("*.json"))
    missing = [n for n in names if not (RECIPES / f"{n}.json").is_file()]
    if missing:
        parser.error(f"no recipe {', '.join(missing)} in {RECIPES}")
    if not args.photo.is_file():
        parser.error(f"photo {args.photo} not found; pass --photo")
    args.out.mkdir(parents=True, exist_ok=True)
    paintings = []
    for name in names:
        recipe = json.loads((RECIPES / f"{name}.json").read_text())
        paintings.append((ROOT / recipe["style"]).resolve())
        cmd = [sys.executable, "-m", "stylexport", "sweep", str(args.photo), str(paintings[-1]),
               "--style-weights", args.weights, "--tv-weights", str(recipe.get("tv_weight", 1e-7)),
               "--style-layer-weights", args.layer_weights,
               "--size", str(recipe.get("image_size", 256)), "--style-size", str(recipe.get("style_size", 512)),
               "--content-weight", str(recipe.get("content_weight", 1.0)), "--iterations", str(args.iterations),
               "-o", str(args.out / f"{name}.jpg")]
        print(" ".join(cmd), flush=True)
        if subprocess.call(cmd, cwd=ROOT) != 0:
            sys.exit(f"error: the sweep of {name} failed")
    inputs_sheet(args.photo, paintings, names, args.out / "inputs.jpg")


def inputs_sheet(photo: Path, paintings: list[Path], names: list[str], out: Path, side: int = 192) -> None:
    """The photo and the paintings in one labelled strip, each fitted into side x side (the sheets' key)."""
    import torch.nn.functional as F

    from stylexport.figures import contact_sheet
    from stylexport.image import read_image, save_image

    tiles = []
    for path in [photo, *paintings]:
        image = read_image(path)
        scale = side / max(image.shape[-2:])
        size = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
        tiles.append(F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0])
    save_image(contact_sheet([tiles], row_labels=[""], col_labels=["photo", *names]), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
