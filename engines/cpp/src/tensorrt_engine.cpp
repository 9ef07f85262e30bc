// TensorRT backend: a plan file and its JSON sidecar. Preallocated device buffers sized for the engine's
// optimization profile, one CUDA stream, pinned host staging, optional CUDA graph per input shape.
//
// Written against the TensorRT 10/11 C++ API (name-based I/O, enqueueV3). Type-checked against the public
// headers of NVIDIA/TensorRT; never linked or run in the workplace it was written in (see README).
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "convert.hpp"
#include "engines_internal.hpp"
#include "stylexport/engine.hpp"

namespace stylexport {
namespace {

class Logger final : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "tensorrt: " << msg << std::endl;
  }
};

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
}

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};
template <typename T>
std::unique_ptr<T, DeviceFree> device_alloc(size_t count) {
  void* p = nullptr;
  check(cudaMalloc(&p, count * sizeof(T)), "cudaMalloc");
  return std::unique_ptr<T, DeviceFree>(static_cast<T*>(p));
}
template <typename T>
std::unique_ptr<T, HostFree> host_alloc(size_t count) {
  void* p = nullptr;
  check(cudaMallocHost(&p, count * sizeof(T)), "cudaMallocHost");
  return std::unique_ptr<T, HostFree>(static_cast<T*>(p));
}

std::string version_string(int32_t v) {  // getInferLibVersion(): major * 10000 + minor * 100 + patch
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

class TrtEngine final : public Engine {
 public:
  TrtEngine(const std::string& path, Metadata meta, const EngineOptions& options)
      : path_(path), use_graph_(options.cuda_graph) {
    meta_ = std::move(meta);
    validate_contract(meta_, {"tensorrt-fp16", "tensorrt-plan", "trt"});
    if (options.device == "cpu") throw Error("TensorRT engines run on a CUDA GPU; use --device cuda (or auto)");
    check_built_here();
    std::ifstream file(path, std::ios::binary);
    std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    engine_.reset(runtime_ ? runtime_->deserializeCudaEngine(plan.data(), plan.size()) : nullptr);
    if (!engine_) throw Error("TensorRT could not load " + path + " (corrupt or built elsewhere); rebuild it with stylexport export --trt");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error("TensorRT could not create an execution context for " + path + " (out of GPU memory?)");
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? input_ : output_) = name;
    }
    if (input_ != meta_.get("input_name") || engine_->getTensorDataType(input_.c_str()) != nvinfer1::DataType::kFLOAT ||
        engine_->getTensorDataType(output_.c_str()) != nvinfer1::DataType::kFLOAT) {
      throw Error("engine " + path + " does not take and return float32 '" + meta_.get("input_name") +
                  "'; rebuild it with stylexport export --trt");
    }
    min_ = engine_->getProfileShape(input_.c_str(), 0, nvinfer1::OptProfileSelector::kMIN);
    max_ = engine_->getProfileShape(input_.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
    const size_t pixels = static_cast<size_t>(max_.d[2]) * static_cast<size_t>(max_.d[3]);
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    host_u8_ = host_alloc<std::uint8_t>(pixels * 3);
    device_u8_ = device_alloc<std::uint8_t>(pixels * 3);
    device_in_ = device_alloc<float>(pixels * 3);
    device_out_ = device_alloc<float>(pixels * 3);
  }

  ~TrtEngine() override {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  Image run(const Image& input) override {
    check_image_size(meta_, input.height, input.width);
    const int h = input.height, w = input.width;
    if (h < min_.d[2] || w < min_.d[3] || h > max_.d[2] || w > max_.d[3]) {
      throw Error("image is " + std::to_string(h) + "x" + std::to_string(w) + ", outside the engine's profile " +
                  std::to_string(min_.d[2]) + "x" + std::to_string(min_.d[3]) + " .. " + std::to_string(max_.d[2]) +
                  "x" + std::to_string(max_.d[3]) + "; rebuild it with stylexport export --trt --min/--max covering it");
    }
    const size_t bytes = input.pixels.size();
    std::memcpy(host_u8_.get(), input.pixels.data(), bytes);
    check(cudaMemcpyAsync(device_u8_.get(), host_u8_.get(), bytes, cudaMemcpyHostToDevice, stream_), "upload");
    if (h != shape_h_ || w != shape_w_) set_shape(h, w);
    if (graph_exec_) {
      check(cudaGraphLaunch(graph_exec_, stream_), "cudaGraphLaunch");
    } else {
      enqueue(h, w);
    }
    check(cudaMemcpyAsync(host_u8_.get(), device_u8_.get(), bytes, cudaMemcpyDeviceToHost, stream_), "download");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    Image out{h, w, std::vector<std::uint8_t>(host_u8_.get(), host_u8_.get() + bytes)};
    return out;
  }

  std::string name() const override { return use_graph_ ? "tensorrt-fp16-cudagraph" : "tensorrt-fp16"; }

 private:
  void check_built_here() {
    const std::string here_trt = version_string(getInferLibVersion());
    const std::string& built_trt = meta_.get("tensorrt_version");
    if (built_trt.rfind(here_trt, 0) != 0) {
      throw Error("engine " + path_ + " was built with TensorRT " + built_trt + ", this host has " + here_trt +
                  "; rebuild it here with stylexport export --trt");
    }
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    const std::string cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    if (meta_.get("gpu_name") != prop.name || meta_.get("compute_capability") != cc) {
      throw Error("engine " + path_ + " was built for " + meta_.get("gpu_name") + " (sm " + meta_.get("compute_capability") +
                  "), this GPU is " + prop.name + " (sm " + cc + "); rebuild it here with stylexport export --trt");
    }
  }

  void enqueue(int h, int w) {
    launch_u8_hwc_to_f32_nchw(device_u8_.get(), device_in_.get(), h, w, stream_);
    if (!context_->enqueueV3(stream_)) throw Error("TensorRT enqueueV3 failed for a " + std::to_string(h) + "x" + std::to_string(w) + " input");
    launch_f32_nchw_to_u8_hwc(device_out_.get(), device_u8_.get(), h, w, stream_);
  }

  // A new input shape: tell the context, run once (TensorRT's own setup work must not be captured), and
  // capture convert -> engine -> convert as one CUDA graph when --cuda-graph asked for it.
  void set_shape(int h, int w) {
    if (graph_exec_) {
      cudaGraphExecDestroy(graph_exec_);
      graph_exec_ = nullptr;
    }
    if (!context_->setInputShape(input_.c_str(), nvinfer1::Dims4{1, 3, h, w}) ||
        !context_->setTensorAddress(input_.c_str(), device_in_.get()) ||
        !context_->setTensorAddress(output_.c_str(), device_out_.get())) {
      throw Error("TensorRT rejected input shape 1x3x" + std::to_string(h) + "x" + std::to_string(w));
    }
    shape_h_ = h;
    shape_w_ = w;
    if (!use_graph_) return;
    enqueue(h, w);  // the uploaded frame is converted again inside the graph: the result is the same
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    cudaGraph_t graph = nullptr;
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    enqueue(h, w);
    check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    check(cudaGraphInstantiate(&graph_exec_, graph, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(graph);
  }

  std::string path_;
  bool use_graph_ = false;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::string input_, output_;
  nvinfer1::Dims min_{}, max_{};
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<std::uint8_t, HostFree> host_u8_;
  std::unique_ptr<std::uint8_t, DeviceFree> device_u8_;
  std::unique_ptr<float, DeviceFree> device_in_, device_out_;
  int shape_h_ = -1, shape_w_ = -1;
  cudaGraphExec_t graph_exec_ = nullptr;
};

}  // namespace

std::unique_ptr<Engine> open_tensorrt_engine(const std::string& path, Metadata meta, const EngineOptions& options) {
  return std::make_unique<TrtEngine>(path, std::move(meta), options);
}

}  // namespace stylexport
