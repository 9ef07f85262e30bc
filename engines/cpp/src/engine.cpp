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
