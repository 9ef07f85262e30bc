"""Device choice: only what stylexport has engines for, and never a silent fall back to the CPU."""

import pytest
import torch

from stylexport.devices import pick_device
from stylexport.errors import StylexportError


@pytest.mark.parametrize("name", ["mps", "xpu", "gpu", "cuda:x", "meta"])
def test_devices_without_engines_of_ours_are_refused_not_run_on_the_cpu(name):
    """`--device mps` (or xpu) ran on the CPU without a word: torch knows the name, stylexport has no engine."""
    with pytest.raises(StylexportError, match=rf"^unknown device '{name}'; use auto, cpu or cuda\[:N\]$"):
        pick_device(name)


def test_cpu_auto_and_cuda_indices(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu") and pick_device("cpu:0").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(StylexportError, match="'cuda:1' requested but no CUDA GPU is available; use --device cpu"):
        pick_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto") == torch.device("cuda") and pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(StylexportError, match=r"'cuda:2' requested but this machine has 2 CUDA GPU\(s\), cuda:0 to "
                                              r"cuda:1"):
        pick_device("cuda:2")
