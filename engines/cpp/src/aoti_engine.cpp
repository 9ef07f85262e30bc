// AOTInductor backend: a .pt2 package run through libtorch's AOTIModelPackageLoader.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstring>
#include <memory>
#include <string>

#include "engines_internal.hpp"
#include "stylexport/engine.hpp"

namespace stylexport {
namespace {

class AotiEngine final : public Engine {
 public:
  AotiEngine(const std::string& path, Metadata meta, const EngineOptions& options) {
    const std::string& device = options.device;
    meta_ = std::move(meta);
    validate_contract(meta_, {"aoti-cpu", "aoti", "aoti-cuda-fp16"});
    const std::string& built_for = meta_.get("device");
    if (device != "auto" && device != built_for) {
      throw Error("engine " + path + " was compiled for " + built_for + ", not " + device +
                  "; export it again with stylexport export --aoti on a machine with that device");
    }
    if (built_for == "cuda" && !at::hasCUDA()) {
      throw Error("engine " + path + " was compiled for CUDA and this libtorch sees no CUDA GPU; use the CPU package");
    }
    device_ = at::Device(built_for == "cuda" ? at::kCUDA : at::kCPU);
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model", false, 1,
                                                                          built_for == "cuda" ? 0 : -1);
    } catch (const std::exception& e) {
      throw Error("cannot load AOTInductor package " + path + " (" + first_line(e.what()) +
                  "); it must be exported by the same torch version as this host's libtorch");
    }
    // The package carries the checksum of the checkpoint it was compiled from; so does the sidecar.
    auto embedded = loader_->get_metadata();
    auto it = embedded.find("stylexport.source_sha256");
    if (it != embedded.end() && it->second != meta_.get("source_sha256")) {
      throw Error("engine " + path + " and its sidecar " + meta_.source +
                  " describe different checkpoints; keep each engine with its own sidecar");
    }
  }

  Image run(const Image& input) override {
    check_image_size(meta_, input.height, input.width);
    c10::InferenceMode guard;
    at::Tensor hwc = at::from_blob(const_cast<std::uint8_t*>(input.pixels.data()), {1, input.height, input.width, 3},
                                   at::kByte);
    at::Tensor x = hwc.to(device_).permute({0, 3, 1, 2}).to(at::kFloat).contiguous();
    std::vector<at::Tensor> outputs = loader_->run({x});
    at::Tensor y = outputs.at(0).clamp(0, 255).round().to(at::kByte).permute({0, 2, 3, 1}).contiguous().to(at::kCPU);
    Image out;
    out.height = input.height;
    out.width = input.width;
    out.pixels.resize(input.pixels.size());
    if (y.numel() != static_cast<int64_t>(out.pixels.size())) {
      throw Error("engine returned shape " + shape_string(y.sizes()) + " for a " + std::to_string(input.height) + "x" +
                  std::to_string(input.width) + " image; re-export it");
    }
    std::memcpy(out.pixels.data(), y.data_ptr<std::uint8_t>(), out.pixels.size());
    return out;
  }

  std::string name() const override { return "aoti-" + meta_.get("device"); }

 private:
  static std::string shape_string(at::IntArrayRef sizes) {
    std::string s = "(";
    for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
    return s + ")";
  }

  at::Device device_{at::kCPU};
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

}  // namespace

std::unique_ptr<Engine> open_aoti_engine(const std::string& path, Metadata meta, const EngineOptions& options) {
  if (options.cuda_graph) throw Error("--cuda-graph is a TensorRT option; AOTInductor packages do not take it");
  return std::make_unique<AotiEngine>(path, std::move(meta), options);
}

}  // namespace stylexport
