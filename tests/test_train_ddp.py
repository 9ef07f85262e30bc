"""Training beyond one process: torchrun with 2 CPU ranks (gloo) matches 1 rank with the whole batch."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from stylexport.image import read_image, resize_max_side, sample_paths
from stylexport.model import TransformerNet

from .conftest import needs_offline_vgg, smooth_image


def _train(tmp_path, run, batch, *launcher):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STYLEXPORT_OFFLINE": "1"}
    args = [*launcher, "-m", "stylexport", "train", "--style", str(tmp_path / "style.png"), "--data",
            str(tmp_path / "photos"), "-o", str(tmp_path / run), "--steps", "3", "--batch-size", str(batch),
            "--image-size", "48", "--style-size", "64", "--workers", "0", "--checkpoint-every", "3",
            "--preview-every", "3", "--log-every", "1", "--vgg-weights", "offline", "--device", "cpu"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@needs_offline_vgg
@pytest.mark.slow
def test_two_ranks_of_batch_2_equal_one_rank_of_batch_4(tmp_path, vgg):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    (tmp_path / "photos").mkdir()
    for i in range(8):
        Image.fromarray(smooth_image(56, 72, seed=30 + i)).save(tmp_path / "photos" / f"p{i}.png")
    Image.fromarray(smooth_image(64, 64, seed=99)).save(tmp_path / "style.png")

    _train(tmp_path, "one", 4, sys.executable)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = _train(tmp_path, "two", 2, *torchrun)
    assert result.stdout.count("trained 3 steps") == 1  # rank 0 reports, rank 1 is quiet

    # Same start, same data, same gradients: every step's loss (averaged over ranks) is the one-process loss.
    # A rank that read other photos would move it by percent; measured agreement is 5e-6 or better.
    h1, h2 = ([json.loads(line) for line in (tmp_path / run / "history.jsonl").read_text().splitlines()]
              for run in ("one", "two"))
    assert [h["step"] for h in h2] == [1, 2, 3]
    for a, b in zip(h1, h2, strict=True):
        for term in ("total", "content", "style"):
            assert b[term] == pytest.approx(a[term], rel=1e-4), (a["step"], term)
    # The networks compute nearly the same function. Weights are compared through outputs: Adam's first step
    # is sign(g)·lr, so parameters whose true gradient is zero (conv biases that a following instance norm
    # cancels) or nearly zero take rounding noise's sign in each run and differ by up to lr per step.
    photo = resize_max_side(read_image(sample_paths()[0]), 64)[None]
    torch.manual_seed(42)  # the run's seed: its initial weights
    outputs = {}
    for name, state in (("start", TransformerNet().state_dict()),
                        ("one", load_file(tmp_path / "one" / "model.safetensors")),
                        ("two", load_file(tmp_path / "two" / "model.safetensors"))):
        net = TransformerNet().eval()
        net.load_state_dict(state)
        with torch.no_grad():
            outputs[name] = net(photo, clamp=False)
    moved = float((outputs["one"] - outputs["start"]).abs().mean())
    assert moved > 0.1  # three steps changed the picture by more than a tenth of a level on average
    diff = (outputs["two"] - outputs["one"]).abs()
    assert float(diff.mean()) < 0.02 * moved and float(diff.max()) < 1.0, (float(diff.mean()), float(diff.max()))
    # only rank 0 wrote: the same files as the one-process run, and one history line per step
    def listing(run):
        return sorted(str(p.relative_to(tmp_path / run)) for p in (tmp_path / run).rglob("*"))

    assert listing("two") == listing("one")
    assert len((tmp_path / "two" / "history.jsonl").read_text().splitlines()) == 3
    shutil.rmtree(tmp_path / "one")
