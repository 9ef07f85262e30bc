// The engine's JSON sidecar: read with nlohmann/json, validated against the contract this host implements.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "stylexport/engine.hpp"

namespace stylexport {

std::string sidecar_path(const std::string& engine_path) { return engine_path + ".json"; }

const std::string& Metadata::get(const std::string& key) const {
  auto it = values.find(key);
  if (it == values.end()) {
    throw Error("engine metadata " + source + " has no '" + key + "'; re-export the engine with stylexport export");
  }
  return it->second;
}

int Metadata::min_side() const {
  const std::string& text = get("min_side");
  try {
    return std::stoi(text);
  } catch (const std::exception&) {
    throw Error("engine metadata " + source + ": min_side '" + text + "' is not a number; re-export the engine");
  }
}

Metadata load_metadata(const std::string& engine_path) {
  if (!std::filesystem::is_regular_file(engine_path)) {
    throw Error("engine not found: " + engine_path + "; export one with stylexport export --aoti (or --trt)");
  }
  Metadata meta;
  meta.source = sidecar_path(engine_path);
  std::ifstream file(meta.source);
  if (!file) {
    throw Error("engine " + engine_path + " has no metadata sidecar " + meta.source +
                "; stylexport export writes it next to the engine: copy both files together");
  }
  nlohmann::json doc = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    throw Error("engine metadata " + meta.source + " is not a JSON object; re-export the engine");
  }
  for (const auto& [key, value] : doc.items()) {
    meta.values[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  return meta;
}

void validate_contract(const Metadata& meta, const std::vector<std::string>& formats) {
  const std::string& version = meta.get("contract_version");
  if (version != kContractVersion) {
    throw Error("engine metadata " + meta.source + ": contract_version '" + version + "', this host implements '" +
                kContractVersion + "'; re-export the engine with the stylexport that matches this host");
  }
  // What the host feeds the engine and expects back.
  const std::pair<const char*, const char*> expected[] = {
      {"input_name", kInputName}, {"layout", "NCHW"}, {"color", "RGB"}, {"dtype", "float32"}, {"value_range", "0-255"}};
  for (const auto& [key, want] : expected) {
    const std::string& got = meta.get(key);
    if (got != want) {
      throw Error("engine metadata " + meta.source + ": " + key + " '" + got + "', this host feeds '" + want +
                  "'; this engine was not written by stylexport export, or was edited");
    }
  }
  const std::string& format = meta.get("format");
  if (std::find(formats.begin(), formats.end(), format) == formats.end()) {
    std::string list;
    for (const auto& f : formats) list += (list.empty() ? "" : ", ") + f;
    throw Error("engine metadata " + meta.source + ": format '" + format + "' does not match the engine file (expected " +
                list + "); keep each engine with its own sidecar");
  }
  meta.min_side();  // must parse
}

void check_image_size(const Metadata& meta, int height, int width) {
  const int min_side = meta.min_side();
  if (height < min_side || width < min_side) {
    throw Error("image is " + std::to_string(height) + "x" + std::to_string(width) + ", this engine needs H and W >= " +
                std::to_string(min_side) + "; resize it first");
  }
}

}  // namespace stylexport
