// open_engine: dispatch on the engine file's suffix to the backends compiled into this build.
#include <filesystem>
#include <string>

#include "engines_internal.hpp"
#include "stylexport/engine.hpp"

namespace stylexport {

std::vector<std::string> backends() {
  std::vector<std::string> names;
#ifdef STYLEXPORT_WITH_AOTI
  names.emplace_back("aoti");
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
  Metadata meta = load_metadata(path);
  if (ext == ".pt2") {
#ifdef STYLEXPORT_WITH_AOTI
    return open_aoti_engine(path, std::move(meta), options);
#else
    throw Error("this build has no AOTInductor backend; rebuild with libtorch (stylexport engines build)");
#endif
  }
  if (ext == ".plan" || ext == ".engine") {
#ifdef STYLEXPORT_WITH_TENSORRT
    return open_tensorrt_engine(path, std::move(meta), options);
#else
    throw Error("this build has no TensorRT backend; install TensorRT and rebuild (stylexport engines build "
                "--tensorrt-root DIR)");
#endif
  }
  throw Error("engine " + path + ": unknown kind '" + ext + "'; the host runs .pt2 (AOTInductor) and .plan (TensorRT)");
}

}  // namespace stylexport
