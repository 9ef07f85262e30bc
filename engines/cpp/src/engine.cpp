// open_engine: dispatch on the engine file's suffix to the backends compiled into this build; run_any_size: the
// size policy for images smaller than an engine takes.
#include <algorithm>
#include <filesystem>
#include <string>

#include "engines_internal.hpp"
#include "stylexport/engine.hpp"

namespace stylexport {
namespace {

// `image` padded by (top, bottom, left, right) px: by reflection (the edge pixel not repeated, as torch's
// "reflect"), each pad at most the side less one; or, with `replicate`, by repeating the edge pixel.
Image pad(const Image& image, int top, int bottom, int left, int right, bool replicate = false) {
  auto source = [replicate](int i, int n) {
    if (replicate) return std::clamp(i, 0, n - 1);
    return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
  };
  Image out;
  out.height = image.height + top + bottom;
  out.width = image.width + left + right;
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  for (int y = 0; y < out.height; ++y) {
    const int sy = source(y - top, image.height);
    for (int x = 0; x < out.width; ++x) {
      const int sx = source(x - left, image.width);
      std::copy_n(&image.pixels[(static_cast<size_t>(sy) * image.width + sx) * 3], 3,
                  &out.pixels[(static_cast<size_t>(y) * out.width + x) * 3]);
    }
  }
  return out;
}

}  // namespace

Image run_any_size(Engine& engine, const Image& input) {
  const int least = engine.metadata().min_side();
  if (input.height >= least && input.width >= least) return engine.run(input);
  // the rounds of stylexport/image.py's reflect_pad_to, so that both pipelines feed the engine the same pixels
  Image padded = input;
  int top = 0, left = 0;
  if (padded.height == 1 || padded.width == 1) {  // one pixel has no reflection: repeat it once first
    padded = pad(padded, 0, padded.height == 1 ? 1 : 0, 0, padded.width == 1 ? 1 : 0, true);
  }
  while (std::min(padded.height, padded.width) < least) {
    const int grow_h = std::min(std::max(least - padded.height, 0), 2 * (padded.height - 1));
    const int grow_w = std::min(std::max(least - padded.width, 0), 2 * (padded.width - 1));
    padded = pad(padded, grow_h / 2, grow_h - grow_h / 2, grow_w / 2, grow_w - grow_w / 2);
    top += grow_h / 2;
    left += grow_w / 2;
  }
  const Image result = engine.run(padded);
  Image out;
  out.height = input.height;
  out.width = input.width;
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  for (int y = 0; y < out.height; ++y) {
    std::copy_n(&result.pixels[(static_cast<size_t>(y + top) * result.width + left) * 3],
                static_cast<size_t>(out.width) * 3, &out.pixels[static_cast<size_t>(y) * out.width * 3]);
  }
  return out;
}

std::vector<std::string> backends() {
  std::vector<std::string> names;
#ifdef STYLEXPORT_WITH_AOTI
  names.emplace_back("aoti");
#endif
#ifdef STYLEXPORT_WITH_OPENVINO
  names.emplace_back("openvino");
#endif
#ifdef STYLEXPORT_WITH_TENSORRT
  names.emplace_back("tensorrt");
#endif
  return names;
}

std::unique_ptr<Engine> open_engine(const std::string& path, const EngineOptions& options) {
  const std::string& device = options.device;
  if (device != "auto" && device != "cpu" && device != "cuda") {
    throw Error("unknown device '" + device + "'; use auto, cpu or cuda");
  }
  const std::string ext = std::filesystem::path(path).extension().string();
  const bool aoti = ext == ".pt2", openvino = ext == ".xml", tensorrt = ext == ".plan" || ext == ".engine";
  if (!aoti && !openvino && !tensorrt) {
    throw Error("engine " + path + ": unknown kind '" + ext +
                "'; the host runs .pt2 (AOTInductor), .xml (OpenVINO) and .plan (TensorRT) files from stylexport "
                "export" + (ext == ".onnx" ? " (an .onnx model: export --openvino, --aoti or --trt from its checkpoint)"
                                            : ""));
  }
  if (openvino) {  // the contract is inside the IR: no sidecar
#ifdef STYLEXPORT_WITH_OPENVINO
    return open_openvino_engine(path, options);
#else
    throw Error("this build has no OpenVINO backend; pip install 'stylexport[cpu]' and rebuild (stylexport engines "
                "build)");
#endif
  }
  if (options.precision != "auto") {
    throw Error("--precision is an OpenVINO option; " + ext + " engines run at the precision they were built for");
  }
  Metadata meta = load_metadata(path);
  if (aoti) {
#ifdef STYLEXPORT_WITH_AOTI
    return open_aoti_engine(path, std::move(meta), options);
#else
    throw Error("this build has no AOTInductor backend; rebuild with libtorch (stylexport engines build)");
#endif
  }
#ifdef STYLEXPORT_WITH_TENSORRT
  return open_tensorrt_engine(path, std::move(meta), options);
#else
  throw Error("this build has no TensorRT backend; install TensorRT and rebuild (stylexport engines build "
              "--tensorrt-root DIR)");
#endif
}

}  // namespace stylexport
