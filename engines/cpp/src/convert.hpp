// uint8 HWC <-> float32 NCHW on the GPU (src/convert.cu), for the TensorRT backend.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace stylexport {

// dst[c * h*w + i] = src[3 * i + c], as float in [0, 255].
void launch_u8_hwc_to_f32_nchw(const std::uint8_t* src, float* dst, int height, int width, cudaStream_t stream);
// dst[3 * i + c] = round-half-even(clamp(src[c * h*w + i], 0, 255)), as torch's clamp().round() does.
void launch_f32_nchw_to_u8_hwc(const float* src, std::uint8_t* dst, int height, int width, cudaStream_t stream);

}  // namespace stylexport
