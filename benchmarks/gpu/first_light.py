"""First light on the lent GPU: every GPU path of stylexport run and measured, stage by stage (issue #19).

On the GPU machine, from the repository root, after benchmarks/gpu/prepare.sh filled .gpu/ here:

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu/first_light.py --out $OUT          (carry [".gpu"])

Each call runs the stages not yet done on this machine, in order, as long as its time budget (--budget,
default 540 s: a call may last 10 minutes) lets a stage's estimate fit; a failing stage is recorded and the
next one runs. State lives in --work (default /root/first-light), so the same command again, while the machine
is warm, goes on where the last one stopped. Every call returns what exists so far: $OUT/summary.md and
$OUT/first-light.tgz (results JSON/MD/PNG, logs, environment). --stages a,b runs just those (again).

--dry-run runs the same stages on this CPU machine with tiny sizes (cpu engines, aoti-cpu), to check the
script itself before GPU time is spent on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARRIED = ROOT / ".gpu"
PY = sys.executable


@dataclasses.dataclass
class Ctx:
    work: Path
    results: Path
    logs: Path
    dry: bool
    env: dict[str, str]

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def checkpoint(self) -> str | None:
        """The train stage's checkpoint; else a carried one; else None (random weights)."""
        for path in (self.work / "train" / "model.safetensors", CARRIED / "checkpoint.safetensors"):
            if path.is_file():
                return str(path)
        return None

    def ort_cuda(self) -> bool:
        code = "import onnxruntime as o; print('CUDAExecutionProvider' in o.get_available_providers())"
        done = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=self.env)
        return done.stdout.strip() == "True"


@dataclasses.dataclass
class Stage:
    name: str
    estimate_s: float  # what the budget reserves for it
    timeout_s: float
    commands: Callable[[Ctx], list[list[str]] | str]  # argv lists, or a reason to skip
    after: Callable[[Ctx], None] | None = None  # summarizes its outputs into results/


def _bench(ctx: Ctx, name: str, backends: str, sizes: str, batch: str, *extra: str) -> list[list[str]]:
    ckpt = ctx.checkpoint()
    return [[PY, "-m", "stylexport", "bench", *([ckpt] if ckpt else []), "--backends", backends, "--sizes", sizes,
             "--batch", batch, "--device", ctx.device, "-o", str(ctx.results / f"{name}.json"), *extra]]


def env_stage(ctx: Ctx):
    out = ctx.work / "env"
    out.mkdir(exist_ok=True)
    script = (f"nvidia-smi -q > {out}/nvidia-smi.txt 2>&1; nvidia-smi > {out}/nvidia-smi-short.txt 2>&1; "
              f"{PY} -m pip list > {out}/pip-list.txt 2>&1; nvcc --version > {out}/nvcc.txt 2>&1; "
              f"uname -a > {out}/uname.txt; nproc >> {out}/uname.txt; free -g >> {out}/uname.txt; "
              f"{PY} -m stylexport doctor > {out}/doctor.txt 2>&1; cat {out}/doctor.txt; true")
    return [["bash", "-c", script]]


def tensorrt_stage(ctx: Ctx):
    out = ctx.results / "tensorrt-lookup.txt"
    script = (f"exec > {out} 2>&1; echo '$ ldconfig -p | grep -i nvinfer'; ldconfig -p | grep -i nvinfer; "
              f"echo '$ python3 -c import tensorrt'; {PY} -c 'import tensorrt; print(tensorrt.__version__)'; "
              f"echo '$ pip list | grep -i tensorrt'; {PY} -m pip list 2>/dev/null | grep -i -E 'tensorrt|polygraphy'; "
              "echo '$ find / -xdev (libnvinfer*, NvInfer.h, trtexec)'; timeout 60 find / -xdev \\( -name "
              "'libnvinfer*' -o -name NvInfer.h -o -name trtexec \\) 2>/dev/null | head -50; "
              f"echo '$ ORT providers'; {PY} -c 'import onnxruntime as o; print(o.get_available_providers())'; "
              f"cat {out}; true")
    return [["bash", "-c", script]]


def train_stage(ctx: Ctx):
    style = CARRIED / "styles" / "great_wave.jpg"
    style = style if style.is_file() else ROOT / "stylexport" / "assets" / "sample_style.jpg"
    data = CARRIED / "photos"
    if not data.is_dir():
        return "no photos carried (.gpu/photos): run benchmarks/gpu/prepare.sh here and carry .gpu"
    run = ctx.work / "train"
    shutil.rmtree(run, ignore_errors=True)
    # 75 s: thousands of bf16 steps on an H100/H200, enough for a trained-like checkpoint and a falling loss,
    # without spending a tenth of a 15-minute sitting on it
    minutes, size = ("0.3", "64") if ctx.dry else ("1.25", "256")
    return [[PY, "-m", "stylexport", "train", "--style", str(style), "--data", str(data), "-o", str(run),
             "--steps", "20000", "--max-minutes", minutes, "--image-size", size, "--checkpoint-every", "1000",
             "--preview-every", "1000", "--log-every", "10", "--workers", "6" if not ctx.dry else "1",
             "--device", ctx.device]]


def train_after(ctx: Ctx) -> None:
    run = ctx.work / "train"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    head, tail = history[:5], history[-5:]
    result = {"what": "stylexport train for a fixed wall time (--max-minutes), great_wave on the carried photos, "
              "batch 4, 256x256, bf16 autocast", "steps": history[-1]["step"],
              "images_per_second_median": statistics.median(h["images_per_second"] for h in history[1:] or history),
              "loss_first_5": statistics.mean(h["total"] for h in head),
              "loss_last_5": statistics.mean(h["total"] for h in tail),
              "config": json.loads((run / "config.json").read_text()), "history": history}
    (ctx.results / "train-run.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.copy(run / "loss.png", ctx.results / "train-run-loss.png")
    previews = sorted((run / "previews").glob("*.jpg"))
    if previews:
        shutil.copy(previews[-1], ctx.results / "train-run-preview.jpg")


def gatys_stage(ctx: Ctx):
    if ctx.dry:
        return _bench(ctx, "gatys", "torch-fp32", "64", "1", "--gatys", "--gatys-sizes", "64",
                      "--gatys-iterations", "5,10", "--repeats", "5")  # training throughput: minutes on a CPU
    return _bench(ctx, "gatys", "torch-fp32,torch-fp16-cl", "512", "1", "--gatys", "--gatys-sizes", "512",
                  "--gatys-iterations", "100,300,500", "--train-throughput")


def bench_stage(ctx: Ctx):
    if ctx.dry:
        return _bench(ctx, "engines", "torch-fp32,ort-cpu,aoti-cpu", "64,96", "1,2", "--repeats", "6",
                      "--warmup", "2")
    backends = "torch-fp32,torch-fp16-cl,aoti-cuda-fp16" + (",ort-cuda-fp32,ort-cuda-fp16" if ctx.ort_cuda() else "")
    return _bench(ctx, "engines", backends, "256,512,720p,1080p,4k", "1,8", "--repeats", "50")


def pytest_gpu_stage(ctx: Ctx):
    return [[PY, "-m", "pytest", "-m", "gpu", "-rA", "-q", "-p", "no:cacheprovider", "tests",
             f"--junitxml={ctx.results / 'pytest-gpu.xml'}"]]


def cpp_stage(ctx: Ctx):
    ckpt = ctx.checkpoint()
    if ckpt is None:
        return "no checkpoint (the train stage did not run and none was carried)"
    fmt, sizes = ("aoti-cpu", "64,96") if ctx.dry else ("aoti-cuda-fp16", "512,1080p,4k")
    return [[PY, str(ROOT / "benchmarks" / "gpu" / "cpp_host.py"), ckpt, "--format", fmt, "--build",
             str(ctx.work / "cpp-build"), "--sizes", sizes, "--repeat", "10" if ctx.dry else "100",
             "-o", str(ctx.results / "cpp-host.json")]]


def compile_stage(ctx: Ctx):
    if ctx.dry:
        return "torch.compile's engine runs on CUDA only (max-autotune, CUDA graphs)"
    return _bench(ctx, "compile", "torch-fp16-cl,torch-compile,aoti-cuda-fp16", "512,1080p", "1", "--repeats", "50",
                  "--warmup", "20")


def ort_stage(ctx: Ctx):
    if not ctx.ort_cuda():
        return ("onnxruntime has no CUDAExecutionProvider here: stage onnxruntime-gpu with ../shared/gpu/stage.sh "
                "--wheels onnxruntime-gpu==1.31.1 and send its parts first")
    return _bench(ctx, "ort-cuda", "torch-fp16-cl,ort-cuda-fp32,ort-cuda-fp16", "512,1080p,4k", "1,8",
                  "--repeats", "50")


def pytest_cpu_stage(ctx: Ctx):
    if ctx.dry:
        return "the CPU suite runs in CI on this machine"
    return [[PY, "-m", "pytest", "-q", "-n", "16", "-m", "not gpu", "-p", "no:cacheprovider", "tests",
             f"--junitxml={ctx.results / 'pytest-cpu.xml'}"]]


STAGES = [
    Stage("env", 20, 120, env_stage),
    Stage("tensorrt", 30, 90, tensorrt_stage),
    Stage("train", 110, 200, train_stage, train_after),
    Stage("bench", 240, 480, bench_stage),
    Stage("gatys", 90, 300, gatys_stage),
    Stage("pytest-gpu", 240, 500, pytest_gpu_stage),
    Stage("cpp", 200, 480, cpp_stage),
    Stage("compile", 300, 540, compile_stage),
    Stage("ort", 150, 400, ort_stage),
    Stage("pytest-cpu", 300, 540, pytest_cpu_stage),
]


def environment(dry: bool, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    site = Path("/root/site/env.sh")
    if site.is_file() and not dry:  # packages staged with ../shared/gpu/stage.sh (onnxruntime-gpu)
        dumped = subprocess.run(["bash", "-c", f"source {site} && env -0"], capture_output=True).stdout
        env.update(dict(item.split("=", 1) for item in dumped.decode().split("\0") if "=" in item))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["STYLEXPORT_CACHE_DIR"] = str(work / "cache")
    env["STYLEXPORT_REQUIRE_CPP"] = "1"
    vgg = CARRIED / "vgg16-relu4_3-caffe.fp16.safetensors"
    if vgg.is_file():
        env["STYLEXPORT_VGG_WEIGHTS"] = str(vgg)
    debs = sorted((CARRIED / "debs").glob("*.deb"))
    if debs and not dry:  # headers and libraries for the C++ host, unpacked beside, never over, the system
        prefix = work / "cppdeps"
        if not prefix.is_dir():
            for deb in debs:
                subprocess.run(["dpkg", "-x", str(deb), str(prefix)], check=True)
        usr = prefix / "usr"
        env["CMAKE_PREFIX_PATH"] = os.pathsep.join(p for p in (str(usr), env.get("CMAKE_PREFIX_PATH")) if p)
        libdir = usr / "lib" / "x86_64-linux-gnu"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(libdir)) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_stage(stage: Stage, ctx: Ctx, limit_s: float) -> dict:
    started = time.time()
    try:
        commands = stage.commands(ctx)
    except Exception as exc:  # noqa: BLE001 - a stage's own bug must not end the sitting
        return {"status": "failed", "seconds": 0.0, "why": f"{type(exc).__name__}: {exc}"}
    if isinstance(commands, str):
        return {"status": "skipped", "seconds": 0.0, "why": commands}
    log = ctx.logs / f"{stage.name}.log"
    status, why = "ok", ""
    with log.open("a") as f:
        for argv in commands:
            f.write(f"$ {' '.join(argv)}\n")
            f.flush()
            remaining = limit_s - (time.time() - started)
            try:
                done = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=ctx.env,
                                      timeout=max(remaining, 1))
            except subprocess.TimeoutExpired:
                status, why = "timeout", f"over its {limit_s:.0f} s limit"
                break
            if done.returncode != 0:
                status, why = "failed", f"exit {done.returncode}"
                break
    if status == "ok" and stage.after is not None:
        try:
            stage.after(ctx)
        except Exception as exc:  # noqa: BLE001
            status, why = "failed", f"summarizing: {type(exc).__name__}: {exc}"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {"status": status, "seconds": round(time.time() - started, 1), "why": why, "log_tail": tail}


def pack(ctx: Ctx, out: Path, state: dict, started: float) -> None:
    lines = [f"# first light ({'dry run on CPU' if ctx.dry else 'GPU'}), {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"this call {time.time() - started:.0f} s", "", "| stage | status | seconds | note |", "|---|---|---|---|"]
    for stage in STAGES:
        s = state.get(stage.name)
        if s is None:
            lines.append(f"| {stage.name} | not run yet | | |")
            continue
        tail = [line for line in s.get("log_tail") or [] if line.strip(" ─│┃━┏┗┓┛└┘┌┐├┤┴┬╇╈")]
        note = s.get("why") or (tail or [""])[-1]
        lines.append(f"| {stage.name} | {s['status']} | {s['seconds']} | {note[:160].replace('|', '/')} |")
    lines += ["", "Results: " + ", ".join(sorted(p.name for p in ctx.results.iterdir()))]
    md = "\n".join(lines) + "\n"
    (ctx.work / "summary.md").write_text(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(md)
    with tarfile.open(out / "first-light.tgz", "w:gz") as tar:
        for folder in ("results", "logs", "env"):
            for path in sorted((ctx.work / folder).rglob("*")):
                if path.is_file() and path.stat().st_size < 4 * 2**20:
                    tar.add(path, arcname=str(path.relative_to(ctx.work)))
        tar.add(ctx.work / "state.json", arcname="state.json")
        tar.add(ctx.work / "summary.md", arcname="summary.md")
    print(md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "first-light-out")))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=540.0, help="seconds this call may spend on stages")
    parser.add_argument("--stages", default=None, help="comma-separated stage names to run (again)")
    parser.add_argument("--dry-run", action="store_true", help="the same stages on a CPU, tiny sizes")
    args = parser.parse_args()
    started = time.time()
    work = args.work or Path("/tmp/first-light-dry" if args.dry_run else "/root/first-light")
    for sub in ("results", "logs", "env"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    ctx = Ctx(work=work, results=work / "results", logs=work / "logs", dry=args.dry_run,
              env=environment(args.dry_run, work))
    state_file = work / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    names = [s.name for s in STAGES]
    wanted = args.stages.split(",") if args.stages else [n for n in names if n not in state]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        sys.exit(f"error: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    for stage in STAGES:
        if stage.name not in wanted:
            continue
        left = args.budget - (time.time() - started)
        if stage.estimate_s > left:
            print(f"[first-light] {stage.name}: left for the next call ({left:.0f} s left, needs "
                  f"~{stage.estimate_s:.0f})")
            continue
        print(f"[first-light] {stage.name}: running (limit {min(stage.timeout_s, left):.0f} s)", flush=True)
        state[stage.name] = run_stage(stage, ctx, min(stage.timeout_s, left))
        print(f"[first-light] {stage.name}: {state[stage.name]['status']} in {state[stage.name]['seconds']} s "
              f"{state[stage.name].get('why', '')}", flush=True)
        state_file.write_text(json.dumps(state, indent=2) + "\n")
    state_file.write_text(json.dumps(state, indent=2) + "\n")
    pack(ctx, args.out, state, started)


if __name__ == "__main__":
    main()
