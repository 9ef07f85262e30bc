#!/usr/bin/env bash
# Fill .gpu/ (ignored by git) with what the GPU machine lacks, to carry with a device run: carry [".gpu"].
#   .gpu/vgg16-relu4_3-caffe.safetensors  the offline VGG16 converted (its wheel is not on that machine)
#   .gpu/photos/, .gpu/styles/            ../shared/data photos and the recipe paintings (training, Gatys)
#   .gpu/debs/                            libpng/libjpeg/zlib/nlohmann-json (Debian 12) for the C++ host
# Run from the repository root in the dev venv: bash benchmarks/gpu/prepare.sh
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
shared=${STYLEXPORT_SHARED:-$top/../shared}
rm -rf .gpu && mkdir -p .gpu/styles .gpu/debs
python - <<'EOF'
import shutil
from stylexport.fileio import cache_dir
from stylexport.vgg import OFFLINE_CACHE_FILE, load_weights
load_weights("offline")  # converts (once) into the cache
shutil.copy(cache_dir() / OFFLINE_CACHE_FILE, ".gpu/vgg16-relu4_3-caffe.safetensors")
EOF
cp -r "$shared/data/photos" .gpu/photos
for recipe in training/styles/*.json; do
  cp "$shared/data/styles/$(basename "$recipe" .json).jpg" .gpu/styles/
done
(cd .gpu/debs && apt-get download -q libpng-dev libpng16-16 zlib1g-dev zlib1g libjpeg62-turbo-dev libjpeg62-turbo \
  libjpeg-dev nlohmann-json3-dev >/dev/null)
du -sh .gpu .gpu/*
total=$(( $(du -sb .gpu | cut -f1) + $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) ))
echo "carried with the working tree: $((total / 1048576)) MiB of the 64 MiB a call may carry"
