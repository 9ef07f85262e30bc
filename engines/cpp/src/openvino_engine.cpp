// OpenVINO backend: an IR (.xml + .bin, from stylexport export --openvino or --int8) on the CPU through
// OpenVINO's C++ runtime, the headers, libraries and CMake config that the `openvino` wheel ships. No libtorch:
// a host built with --no-aoti links OpenVINO alone.
//
// The contract comes from the IR's runtime info (its `stylexport` section), not from a sidecar. The compiled
// model takes the image as it is: a PrePostProcessor step converts uint8 NHWC to the network's float32 NCHW
// inside OpenVINO, and hands back float32 NHWC, which the host clamps and rounds half to even (what Python does).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <openvino/openvino.hpp>
#include <string>

#include "engines_internal.hpp"
#include "stylexport/engine.hpp"

namespace stylexport {
namespace {

constexpr const char* kSection = "stylexport";  // stylexport/runtime/openvino_backend.py: RT_SECTION

Metadata read_contract(const std::shared_ptr<ov::Model>& model, const std::string& path) {
  Metadata meta;
  meta.source = path + " (runtime info)";
  if (!model->has_rt_info(kSection)) {
    throw Error("OpenVINO model " + path + " carries no stylexport contract in its runtime info; this host runs IRs "
                "written by stylexport export --openvino (or --int8); stylexport stylize runs other IRs");
  }
  for (const auto& [key, value] : model->get_rt_info<ov::AnyMap>(kSection)) meta.values[key] = value.as<std::string>();
  return meta;
}

class OpenVinoEngine final : public Engine {
 public:
  OpenVinoEngine(const std::string& path, const EngineOptions& options) {
    if (options.device == "cuda") {
      throw Error("OpenVINO IRs run on the CPU in this host; for CUDA export a .pt2 (--aoti) or a .plan (--trt)");
    }
    std::shared_ptr<ov::Model> model;
    try {
      model = core_.read_model(path);
    } catch (const std::exception& e) {
      throw Error("cannot read OpenVINO model " + path + " (" + first_line(e.what()).substr(0, 160) +
                  "); keep the .xml with its .bin, or export it again");
    }
    meta_ = read_contract(model, path);
    validate_contract(meta_, {"openvino", "openvino-int8"});
    if (model->inputs().size() != 1 || model->outputs().size() != 1 ||
        model->input().get_partial_shape().rank() != ov::Dimension(4)) {
      throw Error("OpenVINO model " + path + " is not one (N, 3, H, W) image in and one out; re-export it");
    }

    precision_ = options.precision == "auto" ? "fp32" : options.precision;
    if (precision_ != "fp32" && precision_ != "bf16") {
      throw Error("unknown precision '" + options.precision + "'; OpenVINO runs fp32 or bf16");
    }
    if (precision_ == "bf16") {
      const auto caps = core_.get_property("CPU", ov::device::capabilities);
      if (std::find(caps.begin(), caps.end(), ov::device::capability::BF16) == caps.end()) {
        throw Error("this CPU has no BF16 instructions (AVX-512 BF16 or AMX): BF16 would be emulated, slower than "
                    "FP32; drop --precision bf16");
      }
    }

    ov::preprocess::PrePostProcessor ppp(model);
    ppp.input().tensor().set_element_type(ov::element::u8).set_layout("NHWC");
    ppp.input().preprocess().convert_element_type(ov::element::f32);
    ppp.input().model().set_layout("NCHW");
    ppp.output().tensor().set_element_type(ov::element::f32).set_layout("NHWC");
    ppp.output().model().set_layout("NCHW");
    model = ppp.build();

    // The settings of the Python engines openvino-fp32/-bf16/-int8 (an INT8 IR runs its float parts in FP32).
    compiled_ = core_.compile_model(model, "CPU", ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY),
                                    ov::hint::inference_precision(precision_ == "bf16" ? ov::element::bf16
                                                                                       : ov::element::f32));
    request_ = compiled_.create_infer_request();
  }

  Image run(const Image& input) override {
    check_image_size(meta_, input.height, input.width);
    // Wraps the caller's pixels: OpenVINO reads them in place.
    ov::Tensor x(ov::element::u8, {1, static_cast<size_t>(input.height), static_cast<size_t>(input.width), 3},
                 const_cast<std::uint8_t*>(input.pixels.data()));
    request_.set_input_tensor(x);
    request_.infer();
    const ov::Tensor y = request_.get_output_tensor();
    const ov::Shape expected{1, static_cast<size_t>(input.height), static_cast<size_t>(input.width), 3};
    if (y.get_shape() != expected) {
      throw Error("engine returned shape " + y.get_shape().to_string() + " for a " + std::to_string(input.height) +
                  "x" + std::to_string(input.width) + " image; re-export it");
    }
    Image out;
    out.height = input.height;
    out.width = input.width;
    out.pixels.resize(input.pixels.size());
    const float* values = y.data<const float>();
    for (size_t i = 0; i < out.pixels.size(); ++i) {
      // clamp (NaN to 0), then round half to even (the default rounding mode): torch's clamp(0, 255).round()
      const float v = values[i] >= 0.0f ? std::min(values[i], 255.0f) : 0.0f;
      out.pixels[i] = static_cast<std::uint8_t>(std::nearbyint(v));
    }
    return out;
  }

  std::string name() const override {
    return meta_.get("format") == "openvino-int8" ? "openvino-int8" : "openvino-" + precision_;
  }

 private:
  ov::Core core_;
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
  std::string precision_;
};

}  // namespace

std::unique_ptr<Engine> open_openvino_engine(const std::string& path, const EngineOptions& options) {
  if (options.cuda_graph) throw Error("--cuda-graph is a TensorRT option; OpenVINO IRs do not take it");
  if (!std::filesystem::is_regular_file(path)) {
    throw Error("engine not found: " + path + "; export one with stylexport export --openvino (or --int8)");
  }
  return std::make_unique<OpenVinoEngine>(path, options);
}

}  // namespace stylexport
