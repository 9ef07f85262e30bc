// stylize: run an exported style engine on one image; with --repeat it doubles as a C++ benchmark.
//
//   stylize ENGINE INPUT OUTPUT [--device auto|cpu|cuda] [--precision fp32|bf16] [--warmup N] [--repeat N]
//           [--cuda-graph] [--json]
//
// Latency is end to end per image: uint8 HWC in host memory -> device -> engine -> uint8 HWC in host memory.
// An image with a side below the engine's min_side is reflect-padded up to it and the result cropped, as
// stylexport stylize does (run_any_size).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stylexport/engine.hpp"

namespace {

constexpr const char* kUsage =
    "usage: stylize ENGINE INPUT OUTPUT [--device auto|cpu|cuda] [--precision fp32|bf16] [--warmup N] [--repeat N]\n"
    "               [--cuda-graph] [--json]\n"
    "  ENGINE  written by stylexport export: a .pt2 (AOTInductor) or .plan (TensorRT) with its .json sidecar, or an\n"
    "          OpenVINO .xml with its .bin\n"
    "  INPUT   a PNG or JPEG image; OUTPUT: .png or .jpg\n"
    "  --precision bf16  OpenVINO: BF16 arithmetic (CPUs with AVX-512 BF16 or AMX); default fp32\n"
    "  --warmup N  untimed runs first (default 1); --repeat N  timed runs (default 1), p50/p95 reported\n"
    "  --cuda-graph  TensorRT: replay each shape as one CUDA graph\n"
    "  --json      print the result as one JSON object\n";

int parse_count(const std::string& option, const char* text) {
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < 0 || value > 1000000) {
    throw stylexport::Error(option + " '" + text + "' is not a count; pass a whole number >= 0");
  }
  return static_cast<int>(value);
}

double percentile(std::vector<double> values, double q) {  // linear interpolation, as numpy's default
  std::sort(values.begin(), values.end());
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  stylexport::EngineOptions options;
  int warmup = 1;
  int repeat = 1;
  bool json = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&](const std::string& option) -> const char* {
        if (i + 1 >= argc) throw stylexport::Error(option + " needs a value");
        return argv[++i];
      };
      if (arg == "-h" || arg == "--help") {
        std::cout << kUsage;
        return 0;
      } else if (arg == "--device") {
        options.device = value(arg);
      } else if (arg == "--precision") {
        options.precision = value(arg);
      } else if (arg == "--warmup") {
        warmup = parse_count(arg, value(arg));
      } else if (arg == "--repeat") {
        repeat = std::max(1, parse_count(arg, value(arg)));
      } else if (arg == "--cuda-graph") {
        options.cuda_graph = true;
      } else if (arg == "--json") {
        json = true;
      } else if (arg.size() > 1 && arg[0] == '-') {
        throw stylexport::Error("unknown option " + arg + "; see stylize --help");
      } else {
        positional.push_back(arg);
      }
    }
    if (positional.size() != 3) {
      std::cerr << kUsage;
      throw stylexport::Error("expected ENGINE INPUT OUTPUT, got " + std::to_string(positional.size()) + " arguments");
    }
    const std::string &engine_path = positional[0], &input_path = positional[1], &output_path = positional[2];

    auto engine = stylexport::open_engine(engine_path, options);
    const stylexport::Image input = stylexport::read_image(input_path);
    stylexport::Image output;
    for (int i = 0; i < warmup; ++i) output = stylexport::run_any_size(*engine, input);
    std::vector<double> ms;
    for (int i = 0; i < repeat; ++i) {
      const auto start = std::chrono::steady_clock::now();
      output = stylexport::run_any_size(*engine, input);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    stylexport::write_image(output, output_path);

    const double p50 = percentile(ms, 50), p95 = percentile(ms, 95);
    if (json) {
      nlohmann::json result = {{"engine", engine_path},       {"backend", engine->name()},
                               {"input", input_path},         {"output", output_path},
                               {"height", input.height},      {"width", input.width},
                               {"warmup", warmup},            {"repeat", repeat},
                               {"p50_ms", p50},               {"p95_ms", p95},
                               {"fps", 1000.0 / p50},         {"style_name", engine->metadata().get("style_name")},
                               {"times_ms", ms}};
      std::cout << result.dump() << std::endl;
    } else {
      std::printf("%s -> %s (%dx%d) with %s [%s]: end-to-end p50 %.2f ms, p95 %.2f ms over %d runs (%.1f FPS)\n",
                  input_path.c_str(), output_path.c_str(), input.height, input.width, engine->name().c_str(),
                  engine->metadata().get("style_name").c_str(), p50, p95, repeat, 1000.0 / p50);
    }
    return 0;
  } catch (const stylexport::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: unexpected failure: " << e.what() << std::endl;
    return 1;
  }
}
