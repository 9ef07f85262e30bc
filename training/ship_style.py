"""Ship a trained style: ``python training/ship_style.py RUN_DIR NAME [--out DIR]``.

Writes stylexport/styles/NAME.safetensors (FP16 weights; the run's metadata plus the painting's title,
licence and source from ../shared/data/MANIFEST.tsv when listed there) and NAME.jpg (a thumbnail of the
painting). ``stylexport styles`` then lists it and ``stylexport stylize photo.jpg --style NAME`` uses it.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from stylexport.styles import ship_style

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT.parent / "shared" / "data" / "MANIFEST.tsv"
SHARED_STYLES = ROOT.parent / "shared" / "data" / "styles"


def provenance(style_image: Path) -> dict[str, str]:
    if not MANIFEST.is_file():
        return {}
    with open(MANIFEST, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if Path(row["path"]).name == style_image.name:
                return {"painting": row["path"], "painting_license": row["license"],
                        "painting_source": row["source_package"], "painting_notes": row.get("notes", "")}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--out", type=Path, default=None, help="Folder (default: stylexport/styles)")
    parser.add_argument("--painting", type=Path, default=None, help="the style image, where the run's own path "
                        "is not on this machine (default: the file of that name in ../shared/data/styles)")
    args = parser.parse_args()
    config = json.loads((args.run_dir / "config.json").read_text())
    style_image = Path(config["style"])  # a run trained on the GPU machine names that machine's copy
    style_image = args.painting or (style_image if style_image.is_file() else SHARED_STYLES / style_image.name)
    if not style_image.is_file():
        parser.error(f"painting {style_image} not found; pass --painting")
    style = ship_style(args.run_dir / "model.safetensors", args.name, style_image, out_dir=args.out,
                       provenance=provenance(style_image))
    print(f"shipped {style.name}: {style.model} ({style.model.stat().st_size / 1e6:.1f} MB), {style.thumbnail}")


if __name__ == "__main__":
    main()
