// Pixel format conversion kernels for the TensorRT backend (see convert.hpp).
#include "convert.hpp"

namespace stylexport {
namespace {

constexpr int kThreads = 256;

__global__ void u8_hwc_to_f32_nchw(const std::uint8_t* __restrict__ src, float* __restrict__ dst, int hw) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= hw) return;
  dst[i] = src[3 * i];
  dst[hw + i] = src[3 * i + 1];
  dst[2 * hw + i] = src[3 * i + 2];
}

__global__ void f32_nchw_to_u8_hwc(const float* __restrict__ src, std::uint8_t* __restrict__ dst, int hw) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= hw) return;
  for (int c = 0; c < 3; ++c) {
    const float v = fminf(fmaxf(src[c * hw + i], 0.0f), 255.0f);
    dst[3 * i + c] = static_cast<std::uint8_t>(__float2int_rn(v));  // round half to even, like torch.round
  }
}

int blocks(int hw) { return (hw + kThreads - 1) / kThreads; }

}  // namespace

void launch_u8_hwc_to_f32_nchw(const std::uint8_t* src, float* dst, int height, int width, cudaStream_t stream) {
  const int hw = height * width;
  u8_hwc_to_f32_nchw<<<blocks(hw), kThreads, 0, stream>>>(src, dst, hw);
}

void launch_f32_nchw_to_u8_hwc(const float* src, std::uint8_t* dst, int height, int width, cudaStream_t stream) {
  const int hw = height * width;
  f32_nchw_to_u8_hwc<<<blocks(hw), kThreads, 0, stream>>>(src, dst, hw);
}

}  // namespace stylexport
