// Private to the library: one factory per backend, compiled in when the backend is found.
#pragma once

#include <memory>
#include <string>

#include "stylexport/engine.hpp"

namespace stylexport {

inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

#ifdef STYLEXPORT_WITH_AOTI
std::unique_ptr<Engine> open_aoti_engine(const std::string& path, Metadata meta, const EngineOptions& options);
#endif
#ifdef STYLEXPORT_WITH_OPENVINO
std::unique_ptr<Engine> open_openvino_engine(const std::string& path, const EngineOptions& options);
#endif
#ifdef STYLEXPORT_WITH_TENSORRT
std::unique_ptr<Engine> open_tensorrt_engine(const std::string& path, Metadata meta, const EngineOptions& options);
#endif

}  // namespace stylexport
