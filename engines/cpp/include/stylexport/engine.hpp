// stylexport C++ host: load an exported style engine with its JSON sidecar, stylize 8-bit RGB images.
//
// The library target `stylexport_engine` holds everything below; `stylize` (src/stylize_main.cpp) is a
// small program on top of it. Backends: AOTInductor packages (.pt2, through libtorch), OpenVINO IRs (.xml, on
// the CPU, when OpenVINO is found at configure time) and TensorRT plans (.plan, only when TensorRT is found).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace stylexport {

// A user-facing failure: bad input, a mismatched engine, an unreadable file. `stylize` prints
// "error: <what()>" on one line and exits with 2, like the Python CLI.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// 8-bit RGB, row-major HWC, tightly packed (height * width * 3 bytes).
struct Image {
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> pixels;
};

Image read_image(const std::string& path);                     // PNG or JPEG, any bit depth/colour type
void write_image(const Image& image, const std::string& path);  // .png or .jpg/.jpeg; atomic (temp + rename)

// The contract this host implements: the same strings stylexport/contract.py writes.
inline constexpr const char* kContractVersion = "1";
inline constexpr const char* kInputName = "image";

// The engine's JSON sidecar (<engine>.json), flattened to strings.
struct Metadata {
  std::string source;  // the sidecar's path, for messages
  std::map<std::string, std::string> values;

  bool has(const std::string& key) const { return values.count(key) != 0; }
  const std::string& get(const std::string& key) const;  // throws Error naming the key and the file
  int min_side() const;
};

std::string sidecar_path(const std::string& engine_path);
Metadata load_metadata(const std::string& engine_path);

// Refuse an engine whose contract this host does not implement; `formats` lists the acceptable
// values of the sidecar's "format" key for the backend loading it.
void validate_contract(const Metadata& meta, const std::vector<std::string>& formats);
// Refuse an image the engine's size rule does not admit.
void check_image_size(const Metadata& meta, int height, int width);

class Engine {
 public:
  virtual ~Engine() = default;
  // uint8 HWC in host memory -> device -> run -> uint8 HWC in host memory.
  virtual Image run(const Image& input) = 0;
  virtual std::string name() const = 0;
  const Metadata& metadata() const { return meta_; }

 protected:
  Metadata meta_;
};

// Any image size, as stylexport's Python pipeline runs one (stylexport/runtime/base.py, infer_any_size): an
// image with a side below the engine's min_side (an edge-padded network's is its pad + 4: 36 px for the shipped
// styles) is reflect-padded up to it, evenly, and the result cropped back; any other image is engine.run's.
// Engine::run itself refuses such an image.
Image run_any_size(Engine& engine, const Image& input);

struct EngineOptions {
  std::string device = "auto";  // "auto" (what the engine was built for), "cpu" or "cuda"; a mismatch is an Error
  bool cuda_graph = false;       // TensorRT: replay convert -> engine -> convert as one CUDA graph per shape
  std::string precision = "auto";  // OpenVINO: "fp32" (auto) or "bf16" (CPUs with AVX-512 BF16/AMX); others: auto
};

// Opens a .pt2 (AOTInductor), .xml (OpenVINO) or .plan (TensorRT) engine after validating its contract (the
// sidecar; an IR's runtime info).
std::unique_ptr<Engine> open_engine(const std::string& path, const EngineOptions& options = {});

// Backends compiled into this build, e.g. {"aoti", "openvino", "tensorrt"}.
std::vector<std::string> backends();

}  // namespace stylexport
