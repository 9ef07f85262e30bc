"""Train the recipe styles on the lent GPU within one sitting, and bring each back finished (issue #20).

On the GPU machine, from the repository root, with .gpu/ filled by benchmarks/gpu/prepare.sh here:

    PYTHONUNBUFFERED=1 python3 training/gpu_zoo.py --out $OUT --minutes 6 --styles great_wave,starry_night,...

Each named style trains in its own process, side by side on the one GPU (batch 4 leaves it mostly idle), for
--minutes, from training/styles/NAME.json with --hold-out 20 (the evaluation photos); a run folder left in
/root/zoo by an earlier call on the same (warm) machine is resumed. Then every style is evaluated against Gatys
on its 20 held-out photos (training/evaluate_style.py, the styles side by side) and comes back as
$OUT/NAME-done.tgz (run files, FP32 model, quality table, Figure 6), finished at the step it reached: the
recipes train at a constant learning rate, so a run stopped at step N is a whole model, and its history says
whether the loss had flattened. Ship it here with training/ship_style.py (the painting's provenance is in
../shared/data/MANIFEST.tsv, not on that machine).

Why nothing comes back half-trained: a run's resumable state (state.pt + model.safetensors, ~20 MB) could come
back, but it could not outlive the session (.gpu/ is not kept, and committing training state is not wanted),
and a task that draws the GPU has 15 minutes of device time in all: one training call a sitting. So a style is
trained within one sitting. --continue-later leaves unfinished styles on the warm machine unevaluated, for a
next call of the same sitting (where device time allows one).

At most 8 files of 16 MiB come back from a call: up to 8 styles (one ~7 MB tgz each).

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
    parser.add_argument("--continue-later", action="store_true", help="leave styles short of their recipe's "
                        "steps on this warm machine for the next call, instead of evaluating them now")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    names = args.styles.split(",")
    if len(names) > 8:
        parser.error(f"{len(names)} styles named, but at most 8 files come back from a call (one per style)")
    work = args.work or Path("/tmp/zoo-dry" if args.dry_run else "/root/zoo")
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "STYLEXPORT_VGG_WEIGHTS": str(CARRIED / "vgg16-relu4_3-caffe.fp16.safetensors"), "PYTHONUNBUFFERED": "1"}
    device = "cpu" if args.dry_run else "cuda"
    dry = ["--image-size", "64", "--steps", "20", "--style-size", "128"] if args.dry_run else []

    procs = {}
    for name in names:
        run = work / name
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

    evaluations, later = {}, []
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
        if code != 0 or step == 0:
            print(f"[zoo] {name}: no model to evaluate (see {name}.log in zoo-logs.tgz)", flush=True)
            continue
        if args.continue_later and total and step < total:
            print(f"[zoo] {name}: left on this machine for the next call (--continue-later)", flush=True)
            later.append(name)
            continue
        done = work / f"{name}-done"
        shutil.rmtree(done, ignore_errors=True)
        done.mkdir()
        evaluate = [PY, str(ROOT / "training" / "evaluate_style.py"), str(run), "-o", str(done / "quality.json"),
                    "--figure", str(done / "figure6.jpg"), "--device", device]
        if args.dry_run:
            evaluate += ["--iterations", "2,3", "--size", "64", "--limit", "2"]
        out = open(done / "evaluate.log", "w")  # noqa: SIM115 - closed when the process is done
        evaluations[name] = (subprocess.Popen(evaluate, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), out)

    for name, (proc, out) in evaluations.items():  # side by side, like the training
        print(f"[zoo] {name}: evaluation exit {proc.wait()}", flush=True)
        out.close()
        run, done = work / name, work / f"{name}-done"
        files = [run / f for f in ("config.json", "history.jsonl", "data.tsv", "held_out.txt", "loss.png",
                                   "model.safetensors")]
        files += sorted((run / "previews").glob("*.jpg"))[-1:] + [work / f"{name}.log", *done.iterdir()]
        # shipped here, where ../shared/data/MANIFEST.tsv gives the painting's provenance:
        #   python training/ship_style.py RUN_DIR NAME (RUN_DIR unpacked from NAME-done.tgz)
        with tarfile.open(args.out / f"{name}-done.tgz", "w:gz") as tar:
            for f in files:
                if f.is_file():
                    tar.add(f, arcname=f.name)
    failed = [name for name in names if name not in evaluations and name not in later]
    if failed:  # their logs, so a failed start is not a mystery (one file for all)
        with tarfile.open(args.out / "zoo-logs.tgz", "w:gz") as tar:
            for name in failed:
                if (work / f"{name}.log").is_file():
                    tar.add(work / f"{name}.log", arcname=f"{name}.log")
    print("[zoo] back:", ", ".join(sorted(p.name for p in args.out.iterdir())))

if __name__ == "__main__":
    main()
