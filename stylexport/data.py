"""Training data: any folder tree of photos, random-resized 256x256 crops, unreadable files skipped.

Augmentation randomness is seeded per (seed, epoch, index), so a resumed run sees exactly the crops an
uninterrupted run would, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from stylexport.errors import StylexportError
from stylexport.image import IMAGE_SUFFIXES, read_image


def list_photos(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise StylexportError(f"data folder not found: {root}; pass a folder of photos (e.g. COCO train2014)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StylexportError(f"data folder {root} has no images ({', '.join(IMAGE_SUFFIXES)}); add photos to it")
    return files


class PhotoCrops(Dataset):
    """Item i of epoch e: a random-resized crop of file ``order[i]``, or None when the file is unreadable."""

    def __init__(self, files: list[Path], size: int, seed: int, scale: tuple[float, float] = (0.25, 1.0)):
        self.files = files
        self.size = size
        self.seed = seed
        self.transform = v2.Compose([
            v2.RandomResizedCrop(size, scale=scale, ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor | None, str, str]:
        """A random crop of one photo, its path and "" (a file that cannot be read: None, its path and why)."""
        epoch, index = key
        path = self.files[index]
        try:
            image = read_image(path, min_size=1)
        except StylexportError as exc:
            return None, str(path), str(exc)
        # Upscale small photos so a crop of `size` always exists.
        h, w = image.shape[-2:]
        if min(h, w) < self.size:
            image = v2.functional.resize(image, self.size, antialias=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, index)) & 0x7FFFFFFF)
            crop = self.transform(image)
        return crop.clamp(0, 255), str(path), ""


def collate(items: list[tuple[torch.Tensor | None, str, str]]
            ) -> tuple[torch.Tensor | None, list[tuple[str, str]]]:
    """Stack the readable crops; return the unreadable ones' paths, each with why it could not be read."""
    good = [t for t, _, _ in items if t is not None]
    bad = [(path, why) for t, path, why in items if t is None]
    return (torch.stack(good) if good else None), bad


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return torch.randperm(n, generator=gen).tolist()


class EpochSampler(torch.utils.data.Sampler):
    """Yields (epoch, index) keys from a global sample position on, sharded across ranks for DDP."""

    def __init__(self, n: int, seed: int, start: int, total: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.total, self.rank, self.world = n, seed, start, total, rank, world

    def __iter__(self):
        position = self.start
        while position < self.total:
            epoch, offset = divmod(position, self.n)
            order = epoch_order(self.n, self.seed, epoch)
            for i in range(offset, self.n):
                if position >= self.total:
                    return
                if position % self.world == self.rank:
                    yield epoch, order[i]
                position += 1

    def __len__(self) -> int:
        return max(0, (self.total - self.start) // self.world)
