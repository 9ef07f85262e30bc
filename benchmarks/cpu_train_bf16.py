"""Training on a CPU in FP32 and under BF16 autocast (`stylexport train --amp bf16`), side by side.

Two measurements on this CPU, which must compute BF16 natively (AVX-512 BF16 or AMX):
1. speed: images/s of the training step (forward, VGG16 loss, backward, Adam) at 256x256, batch 4, FP32 and
   BF16 in alternating blocks (``stylexport.bench.run.training_throughput``, what ``bench --train-throughput``
   times);
2. whether BF16 trains as well: two runs of the same recipe and seed, FP32 and BF16, their loss curves on one
   plot and their final losses (mean of the last logged steps).

Writes OUTPUT.json, OUTPUT.md and OUTPUT.png (the two loss curves).

    python benchmarks/cpu_train_bf16.py -o benchmarks/results/cpu-train-bf16.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from stylexport.bench.environment import environment
from stylexport.bench.run import training_throughput
from stylexport.devices import cpu_bf16_problem
from stylexport.fileio import write_text_atomic
from stylexport.train import TrainConfig, load_run_config, train

ROOT = Path(__file__).resolve().parents[1]


def recipe(path: Path, **overrides) -> TrainConfig:
    """A training/styles recipe as a TrainConfig (its paths are relative to the repository root)."""
    raw = json.loads(path.read_text())
    loss_keys = {"content_weight", "style_weight", "tv_weight"}
    from stylexport.losses import LossConfig

    loss = LossConfig(**{k: raw.pop(k) for k in list(raw) if k in loss_keys})
    raw["style"], raw["data"] = str((ROOT / raw["style"]).resolve()), str((ROOT / raw["data"]).resolve())
    raw.pop("epochs", None)
    return TrainConfig(**{**raw, **overrides}, loss=loss)


def plot(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key in zip(axes, ("total", "content", "style"), strict=True):
        for name, history in curves.items():
            ax.plot([h["step"] for h in history], [h[key] for h in history], marker=".", label=name)
        ax.set_title(f"{key} loss (weighted)")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default="cpu-train-bf16.json")
    ap.add_argument("--recipe", default=str(ROOT / "training" / "styles" / "great_wave.json"))
    ap.add_argument("--steps", type=int, default=150, help="steps of each training run")
    ap.add_argument("--image-size", type=int, default=128, help="crop size of the training runs")
    ap.add_argument("--speed-steps", type=int, default=20, help="timed steps per precision at 256x256, batch 4")
    args = ap.parse_args()
    problem = cpu_bf16_problem()
    if problem:
        sys.exit(f"error: {problem}: nothing to compare here")
    cpu = torch.device("cpu")
    out = Path(args.output)
    print("timing training steps, FP32 and BF16 in alternating blocks", file=sys.stderr, flush=True)
    speed = training_throughput(cpu, batches=(4,), steps=args.speed_steps, size=256, block=5)
    by_amp = {r["amp"]: r for r in speed}
    runs, curves = {}, {}
    with tempfile.TemporaryDirectory(prefix="cpu-train-bf16-") as work:
        for amp in ("off", "bf16"):
            config = recipe(Path(args.recipe), steps=args.steps, image_size=args.image_size, amp=amp, device="cpu",
                            preview_every=10**9, checkpoint_every=10**9, workers=0)
            run_dir = Path(work) / amp
            print(f"training {args.steps} steps, amp {amp}", file=sys.stderr, flush=True)
            start = time.perf_counter()
            train(config, run_dir)
            seconds = time.perf_counter() - start
            history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
            last = history[-max(3, len(history) // 5):]
            runs[amp] = {"seconds": seconds, "config": dataclasses.asdict(load_run_config(run_dir)),
                         "final": {k: statistics.mean(h[k] for h in last) for k in ("total", "content", "style", "tv")},
                         "final_steps": [h["step"] for h in last], "history": history}
            curves["FP32" if amp == "off" else "BF16 autocast"] = history
    ratio = by_amp["bf16"]["images_per_second"] / by_amp["off"]["images_per_second"]
    loss_change = runs["bf16"]["final"]["total"] / runs["off"]["final"]["total"] - 1
    results = {"environment": environment(cpu), "speed": speed, "bf16_speedup": ratio, "runs": runs,
               "bf16_final_total_loss_vs_fp32": loss_change}
    write_text_atomic(out, json.dumps(results, indent=2) + "\n")
    name = Path(args.recipe).stem
    plot(curves, out.with_suffix(".png"), f"{name} recipe, {args.image_size} px crops, {args.steps} steps, same seed: "
         f"FP32 vs BF16 autocast on {results['environment']['cpu']}")
    lines = ["| precision | images/s (256x256, batch 4) | its blocks of 5 steps | speedup | whole run | "
             "final total loss | content | style |", "|---|---|---|---|---|---|---|---|"]
    for amp, label in (("off", "FP32"), ("bf16", "BF16 autocast")):
        f, blocks = runs[amp]["final"], by_amp[amp]["block_images_per_second"]
        lines.append(f"| {label} | {by_amp[amp]['images_per_second']:.2f} | {min(blocks):.2f}-{max(blocks):.2f} | "
                     f"{by_amp[amp]['images_per_second'] / by_amp['off']['images_per_second']:.2f} | "
                     f"{runs[amp]['seconds']:.0f} s | {f['total']:.3g} | {f['content']:.3g} | {f['style']:.3g} |")
    lines += ["", f"Final losses: mean of the logged steps {runs['off']['final_steps']} of {args.steps}-step runs at "
              f"{args.image_size} px ({name} recipe, same seed). BF16's final total loss is {loss_change:+.1%} of "
              "FP32's."]
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
