"""The shipped styles on photos they never saw, as one picture: ``python training/gallery.py PHOTO... -o SHEET.jpg``.

One row per installed style (its painting's thumbnail first), one column per photo, the first row the photos
themselves, each a centre square of SIZE px. Writes SHEET.json beside it: the photos, each style's training
steps and where it trained, and the command. For the docs, pick photos whose licence lets the picture be
published (public domain or CC0 in ../shared/data/MANIFEST.tsv) and that the styles were not trained on
(a run's held_out.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from stylexport.checkpoint import load_checkpoint
from stylexport.figures import contact_sheet
from stylexport.image import read_image, save_image
from stylexport.styles import list_styles
from stylexport.train import preview_tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--styles", default=None, help="comma-separated names (default: every installed style)")
    parser.add_argument("--size", type=int, default=320)
    args = parser.parse_args()

    styles = [s for s in list_styles() if s.problem is None]
    if args.styles:
        wanted = args.styles.split(",")
        styles = [s for s in styles if s.name in wanted]
        if missing := sorted(set(wanted) - {s.name for s in styles}):
            raise SystemExit(f"error: --styles {','.join(missing)}: not installed (stylexport styles lists them)")
    if not styles:
        raise SystemExit("error: no style is installed (training/ship_style.py installs one)")
    photos = preview_tiles([read_image(p) for p in args.photos], args.size)
    blank = torch.full_like(photos[0], 255.0)
    rows, labels = [[blank, *photos]], ["photo"]
    for style in styles:
        net = load_checkpoint(style.model).model.float().eval()
        painting = preview_tiles([read_image(style.thumbnail)], args.size)[0] if style.thumbnail else blank
        with torch.no_grad():
            rows.append([painting, *(net(p[None]).clamp(0, 255)[0] for p in photos)])
        labels.append(style.name)
        print(f"{style.name}: {len(photos)} photos", flush=True)
    sheet = contact_sheet(rows, row_labels=labels, col_labels=["painting", *(p.stem for p in args.photos)])
    save_image(sheet, args.output)
    record = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "size": args.size,
              "photos": [p.name for p in args.photos],
              "styles": {s.name: {k: s.metadata.get(k) for k in ("step", "images_seen", "calls", "painting",
                                                                  "painting_license")} for s in styles}}
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
