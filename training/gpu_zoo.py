"""Train the recipe styles on the lent GPU in chunks of under 10 minutes (issue #20).

On the GPU machine, from the repository root, with .gpu/ filled by benchmarks/gpu/prepare.sh here:

    PYTHONUNBUFFERED=1 python3 training/gpu_zoo.py --out $OUT --minutes 7 --styles great_wave,starry_night

Each named style trains in its own process, side by side on the one GPU (batch 4 leaves it mostly idle), for
--minutes, from training/styles/NAME.json with --hold-out 20 (the evaluation photos). A run folder found in
/root/zoo (same machine, warm) or in .gpu/zoo/NAME (carried back from an earlier sitting) is resumed. Then:
- a finished style is evaluated against Gatys on its 20 held-out photos (training/evaluate_style.py) and comes
  back as $OUT/NAME-done.tgz (run files, FP32 model, quality table, Figure 6); ship it here with
  training/ship_style.py (the painting's provenance is in ../shared/data/MANIFEST.tsv, not on that machine);
- an unfinished one comes back as $OUT/NAME-state.tgz (config, history, held-out list, loss curve) plus
  NAME.state.pt and NAME.model.safetensors: the files that resume it (each under 16 MiB). Unpack them into
  .gpu/zoo/NAME/ here (state.pt, model.safetensors) to carry to the next sitting.
At most 8 files come back from a call, so at most 2 unfinished styles a call ship their state (3 files each).
A task that draws the GPU has 15 minutes of device time in all: one call of training a sitting. Name at most 2
styles then (more are refused unless --more says that later calls on the same warm machine will finish them):
a third style's training would be lost with the machine.

--dry-run: the same on this CPU with tiny settings (64 px crops, 20 steps, 3 Gatys iterations).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import torch
from train_style import recipe_args  # the sibling script: a recipe's JSON as `stylexport train` options

ROOT = Path(__file__).resolve().parents[1]
CARRIED = ROOT / ".gpu"
PY = sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", required=True, help="comma-separated recipe names (training/styles/*.json)")
    parser.add_argument("--minutes", type=float, default=7.0, help="training minutes this call")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "zoo-out")))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--more", action="store_true", help="allow more than 2 styles: later calls on this warm "
                        "machine will finish those whose state cannot come back from this one")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    names = args.styles.split(",")
    if len(names) > 2 and not args.more:
        parser.error(f"{len(names)} styles named, but at most 2 unfinished styles can come back from a call (8 "
                     "files); name at most 2, or pass --more if later calls on this warm machine will finish them")
    work = args.work or Path("/tmp/zoo-dry" if args.dry_run else "/root/zoo")
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "STYLEXPORT_VGG_WEIGHTS": str(CARRIED / "vgg16-relu4_3-caffe.safetensors"), "PYTHONUNBUFFERED": "1"}
    device = "cpu" if args.dry_run else "cuda"
    dry = ["--image-size", "64", "--steps", "20", "--style-size", "128"] if args.dry_run else []

    procs = {}
    for name in names:
        run = work / name
        carried = CARRIED / "zoo" / name
        if not (run / "state.pt").is_file() and (carried / "state.pt").is_file():
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(carried, run)
        resume = (run / "state.pt").is_file()
        cmd = [PY, "-m", "stylexport", "train", "--max-minutes", str(args.minutes), "--device", device,
               "--workers", "0" if args.dry_run else "2"]
        # the carried painting and photos; options after the recipe's override it (train_style.py's rule)
        where = ["--style", str(CARRIED / "styles" / f"{name}.jpg"), "--data", str(CARRIED / "photos")]
        cmd += ["--resume", str(run), *where] if resume else \
            [*recipe_args(ROOT / "training" / "styles" / f"{name}.json"), *where, *dry, "--hold-out", "20", "-o",
             str(run)]
        log = open(work / f"{name}.log", "a")  # noqa: SIM115 - closed when the process is done
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env), log)
        print(f"[zoo] {name}: {'resumed' if resume else 'started'}", flush=True)

    unfinished_shipped = 0
    for name, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        run = work / name
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        state = run / "state.pt"
        step = torch.load(state, map_location="cpu", weights_only=True)["step"] if state.is_file() else 0
        total = config.get("steps")
        tail = (work / f"{name}.log").read_text(errors="replace").strip().splitlines()[-1:]
        print(f"[zoo] {name}: exit {code}, step {step} of {total}; {tail}", flush=True)
        small = [run / f for f in ("config.json", "history.jsonl", "data.tsv", "held_out.txt", "loss.png")]
        small += sorted((run / "previews").glob("*.jpg"))[-1:] + [work / f"{name}.log"]
        if code == 0 and total and step >= total:
            done = work / f"{name}-done"
            shutil.rmtree(done, ignore_errors=True)
            done.mkdir()
            evaluate = [PY, str(ROOT / "training" / "evaluate_style.py"), str(run), "-o", str(done / "quality.json"),
                        "--figure", str(done / "figure6.jpg"), "--device", device]
            if args.dry_run:
                evaluate += ["--iterations", "2,3", "--size", "64", "--limit", "2"]
            subprocess.run(evaluate, cwd=ROOT, env=env, stdout=open(done / "evaluate.log", "w"),  # noqa: SIM115
                           stderr=subprocess.STDOUT)
            # shipped here, where ../shared/data/MANIFEST.tsv gives the painting's provenance:
            #   python training/ship_style.py RUN_DIR NAME (RUN_DIR unpacked from NAME-done.tgz)
            with tarfile.open(args.out / f"{name}-done.tgz", "w:gz") as tar:
                for f in [*small, run / "model.safetensors", *done.iterdir()]:
                    if f.is_file():
                        tar.add(f, arcname=f.name)
        elif (run / "state.pt").is_file() and unfinished_shipped < 2:
            unfinished_shipped += 1
            with tarfile.open(args.out / f"{name}-state.tgz", "w:gz") as tar:
                for f in small:
                    if f.is_file():
                        tar.add(f, arcname=f.name)
            shutil.copy(run / "state.pt", args.out / f"{name}.state.pt")
            shutil.copy(run / "model.safetensors", args.out / f"{name}.model.safetensors")
        else:
            print(f"[zoo] {name}: its state stays on this machine (at most 2 unfinished styles come back a call)")
    print("[zoo] back:", ", ".join(sorted(p.name for p in args.out.iterdir())))


if __name__ == "__main__":
    main()
