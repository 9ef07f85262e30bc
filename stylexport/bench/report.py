"""The results as files people read: JSON (everything), a Markdown table, a latency plot; and the rows the
CLI prints, so the terminal and the files never disagree."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

COLUMNS = ("backend", "size", "batch", "p50 ms", "IQR ms", "p95 ms", "FPS", "e2e p50 ms", "% of peak", "PSNR")


def _psnr(q: dict[str, Any]) -> str:
    return "exact" if math.isinf(q["psnr_db"]) else f"{q['psnr_db']:.1f} dB"


def rows(results: dict[str, Any]) -> list[list[str]]:
    """One list of cells per result row (COLUMNS), failed rows with their reason."""
    out = []
    for r in results["results"]:
        cells = [r["backend"], f"{r['height']}x{r['width']}", str(r["batch"])]
        if "error" in r:
            out.append(cells + [f"failed: {r['error']}"] + [""] * (len(COLUMNS) - 4))
            continue
        c, e = r["compute"], r.get("end_to_end")
        peak = r.get("percent_of_peak")
        flag = " !" if r.get("warnings") else ""
        out.append(cells + [f"{c['p50_ms']:.2f}{flag}", f"{c['iqr_ms']:.2f}", f"{c['p95_ms']:.2f}", f"{r['fps']:.1f}",
                            f"{e['p50_ms']:.2f}" if e else "-", f"{peak:.1f}" if peak is not None else "-",
                            _psnr(r["quality"])])
    return out


def speedups(results: dict[str, Any], baseline: str = "torch-fp32") -> dict[tuple[str, int, int, int], float]:
    """p50 speedup of every row over ``baseline`` at the same size and batch (same run, interleaved)."""
    base = {(r["height"], r["width"], r["batch"]): r["compute"]["p50_ms"] for r in results["results"]
            if r["backend"] == baseline and "error" not in r}
    return {(r["backend"], r["height"], r["width"], r["batch"]): base[(r["height"], r["width"], r["batch"])] /
            r["compute"]["p50_ms"] for r in results["results"]
            if "error" not in r and (r["height"], r["width"], r["batch"]) in base}


def fastest_square(results: dict[str, Any]) -> dict[int, tuple[str, float]]:
    """Per square size: the engine with the lowest batch-1 compute p50 (name, ms), for the Gatys comparison."""
    best: dict[int, tuple[str, float]] = {}
    for r in results["results"]:
        if "error" in r or r["batch"] != 1 or r["height"] != r["width"]:
            continue
        if r["height"] not in best or r["compute"]["p50_ms"] < best[r["height"]][1]:
            best[r["height"]] = (r["backend"], r["compute"]["p50_ms"])
    return best


def notes(results: dict[str, Any]) -> list[str]:
    """Warnings (unstable rows) and skipped engines, one line each."""
    lines = [f"{r['backend']} {r['height']}x{r['width']} batch {r['batch']}: {w}" for r in results["results"]
             for w in r.get("warnings", [])]
    return (list(results.get("notes", [])) + lines +
            [f"skipped {name}: {why}" for name, why in results.get("skipped", {}).items()])


def markdown_table(results: dict[str, Any]) -> str:
    env = results["environment"]
    device = env.get("gpu") or env.get("cpu")
    peaks = "; ".join(f"{p} {v['tflops']:.3g} TFLOP/s ({v['how']})" if v["tflops"] else f"{p}: {v['how']}"
                      for p, v in results["peaks"].items())
    m = results["measured"]
    flop = (f"The network does {results['flop_per_pixel']:,} FLOP per pixel." if results["flop_per_pixel"] else
            "A model made elsewhere: its FLOP per pixel are unknown, so no row is compared with the peak.")
    lines = [f"Device: {device}; CPU flags {', '.join(env.get('cpu_flags', [])) or 'none of interest'}; torch "
             f"{env['torch']}, onnxruntime {env['onnxruntime']}, OpenVINO {env.get('openvino') or 'not installed'}, "
             f"TensorRT {env.get('tensorrt') or 'not installed'}; `{env['command']}`", "",
             f"Model: {results['model']} ({results['model_format']}); quality against {results['reference']}. "
             f"{flop} Peak (the limit in '% of peak'): {peaks}. Measured for information: torch matmul "
             f"{m['matmul_tflops']:.3g} TFLOP/s ({m['matmul_dtype']}), copy {m['copy_gb_per_s']:.3g} GB/s.", "",
             "| " + " | ".join(COLUMNS) + " | speedup vs torch-fp32 |", "|" + "---|" * (len(COLUMNS) + 1)]
    ups = speedups(results)
    for r, cells in zip(results["results"], rows(results), strict=True):
        up = ups.get((r["backend"], r["height"], r["width"], r["batch"]))
        lines.append("| " + " | ".join(cells + [f"{up:.2f}x" if up else "-"]) + " |")
    extra = notes(results)
    if extra:
        lines += [""] + [f"- {line}" for line in extra]
    if any(r.get("warnings") for r in results["results"]):
        lines.append("- `!` marks a row with a warning above.")
    if results.get("gatys"):
        lines += ["", "| Gatys L-BFGS | iterations | seconds | Gatys total loss | feed-forward total loss | "
                  "feed-forward speedup (fastest engine, batch 1) |", "|---|---|---|---|---|---|"]
        fastest = fastest_square(results)
        for g in results["gatys"]:
            best = fastest.get(g["size"])
            up = f"{g['seconds'] * 1e3 / best[1]:,.0f}x ({best[0]})" if best else "- (no row at this size)"
            lines.append(f"| {g['size']}x{g['size']} | {g['iterations']} | {g['seconds']:.2f} | "
                         f"{g['gatys_loss']['total']:.4g} | {g['feed_forward_loss']['total']:.4g} | {up} |")
    if results.get("training"):
        lines += ["", "| training step | batch | images/s | autocast | paper's 2 epochs of COCO (160k images) |",
                  "|---|---|---|---|---|"]
        for t in results["training"]:
            lines.append(f"| {t['size']}x{t['size']} | {t['batch']} | {t['images_per_second']:.1f} | {t['amp']} | "
                         f"{t['paper_schedule_hours']:.2f} h |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Latency vs resolution per engine (log scale, IQR as error bars), and speedup over torch FP32."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stylexport.fileio import atomic_path

    fig = figure(results)
    if fig is None:
        return
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def figure(results: dict[str, Any]):
    """The figure ``plot`` saves (None without a batch-1 row): each measured size a tick labelled WxH, the 30 fps
    line (real time) on the latency panel, the 1x line on the speedup panel, one legend beside both."""
    import matplotlib.pyplot as plt

    good = [r for r in results["results"] if "error" not in r and r["batch"] == 1]
    if not good:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    ups = speedups(results)
    for name in dict.fromkeys(r["backend"] for r in good):
        mine = sorted((r for r in good if r["backend"] == name), key=lambda r: r["height"] * r["width"])
        mp = [r["height"] * r["width"] / 1e6 for r in mine]
        p50 = [r["compute"]["p50_ms"] for r in mine]
        err = [[r["compute"]["p50_ms"] - r["compute"]["p25_ms"] for r in mine],
               [r["compute"]["p75_ms"] - r["compute"]["p50_ms"] for r in mine]]
        ax1.errorbar(mp, p50, yerr=err, marker="o", capsize=3, label=name)
        ax2.plot(mp, [ups.get((name, r["height"], r["width"], 1), math.nan) for r in mine], marker="o", label=name)
    env = results["environment"]
    ax1.axhline(1000 / 30, color="0.4", linestyle="--", linewidth=1)
    ax1.annotate("30 fps (33.3 ms)", (0, 1000 / 30), xycoords=("axes fraction", "data"), xytext=(4, 3),
                 textcoords="offset points", fontsize=8, color="0.3")
    sizes = sorted({(r["height"], r["width"]) for r in good}, key=lambda hw: hw[0] * hw[1])
    for ax, ylabel in ((ax1, "p50 latency, ms (log; bars: IQR)"), (ax2, "speedup over torch-fp32 (same run)")):
        ax.set_xscale("log")
        ax.set_xticks([h * w / 1e6 for h, w in sizes], [f"{w}x{h}" for h, w in sizes], rotation=30, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("frame size, W x H (spaced by pixel count, log)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    ax1.set_yscale("log")
    ax2.axhline(1.0, color="0.4", linestyle="--", linewidth=1)
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="engine", title_fontsize=8)
    fig.suptitle(f"stylexport bench, batch 1, on {env.get('gpu') or env.get('cpu')}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.87, 1))  # the legend on the right, over no data
    return fig


def write_results(results: dict[str, Any], path: str | os.PathLike) -> list[Path]:
    """RESULTS.json, RESULTS.md and RESULTS.png side by side."""
    from stylexport.fileio import write_text_atomic

    path = Path(path)
    write_text_atomic(path, json.dumps(results, indent=2, default=str) + "\n")
    md = path.with_suffix(".md")
    write_text_atomic(md, markdown_table(results))
    png = path.with_suffix(".png")
    plot(results, png)
    return [path, md, png]
