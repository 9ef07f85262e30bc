#!/usr/bin/env bash
# Fill .gpu/ (ignored by git) with what the GPU machine lacks, to carry with a device run: carry [".gpu"].
#   .gpu/vgg16-relu4_3-caffe.fp16.safetensors  the offline VGG16 converted, in FP16 (its wheel is not on that
#                                         machine; 15 MB instead of 30.5: room in the carry;
#                                         features within 6e-4, Gram matrices within 3e-4 of FP32, relative)
#   .gpu/photos/, .gpu/styles/            ../shared/data photos, at most 512 px a side (JPEG quality 85: 23 MB
#                                         as they are, with the 31 MB of tracked files, was over a call's
#                                         64 MiB; training crops 256 px from 25-100 % of a photo's area, and
#                                         evaluate_style.py scores at 256), and the recipe paintings
#   .gpu/debs/                            libpng/libjpeg/lcms2/zlib/nlohmann-json (Debian 12) for the C++ host
# Run from the repository root in the dev venv: bash benchmarks/gpu/prepare.sh
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
shared=${STYLEXPORT_SHARED:-$top/../shared}
rm -rf .gpu && mkdir -p .gpu/styles .gpu/debs
python - <<'EOF'
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from stylexport.fileio import cache_dir
from stylexport.vgg import OFFLINE_CACHE_FILE, load_weights
load_weights("offline")  # converts (once) into the cache
cached = cache_dir() / OFFLINE_CACHE_FILE
with safe_open(str(cached), "pt") as f:
    meta = f.metadata()
# the loader reads FP16 files as FP32 (stylexport.vgg._features_only)
save_file({k: v.half() for k, v in load_file(cached).items()}, ".gpu/vgg16-relu4_3-caffe.fp16.safetensors",
          metadata={**meta, "source": meta.get("source", "") + ", FP16 copy for the GPU machine"})
EOF
SHARED_PHOTOS="$shared/data/photos" python - <<'EOF'
import os
from pathlib import Path

from PIL import Image, ImageOps

source, target = Path(os.environ["SHARED_PHOTOS"]), Path(".gpu/photos")
target.mkdir()
for path in sorted(source.iterdir()):
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
        continue
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        img.thumbnail((512, 512), Image.Resampling.LANCZOS)  # only ever smaller
        img.save(target / (path.stem + ".jpg"), quality=85)
EOF
for recipe in training/styles/*.json; do
  cp "$shared/data/styles/$(basename "$recipe" .json).jpg" .gpu/styles/
done
(cd .gpu/debs && apt-get download -q libpng-dev libpng16-16 zlib1g-dev zlib1g libjpeg62-turbo-dev libjpeg62-turbo \
  libjpeg-dev liblcms2-dev liblcms2-2 nlohmann-json3-dev >/dev/null)
# liblcms2-dev weighs 1.8 MB, 1.7 MB of it its PDF manuals: repacked without them (room in the carry)
lcms=$(ls .gpu/debs/liblcms2-dev_*.deb)
dpkg-deb -R "$lcms" .gpu/lcms && rm -f .gpu/lcms/usr/share/doc/liblcms2-dev/*.pdf.gz .gpu/lcms/DEBIAN/md5sums
dpkg-deb -b -Zxz .gpu/lcms "$lcms" >/dev/null && rm -rf .gpu/lcms
du -sh .gpu .gpu/*
total=$(( $(du -sb .gpu | cut -f1) + $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) ))
echo "carried with the working tree: $((total / 1048576)) MiB of the 64 MiB a call may carry"
if [ "$total" -gt $((60 * 1048576)) ]; then
  echo "error: over 60 MiB: a call would be refused, or nearly; carry less (fewer photos, no debs)" >&2
  exit 1
fi
