// CUDA mask kernel: the shared core (mask_core.h) compiled as device code, one sample per thread.
// A sample is a short serial walk (a few hundred bitmap updates), so threads are independent and
// the batch is spread over as many SMs as possible (one warp per block).
#include "masking/mask_core.h"
#include "masking/mask_kernel.h"

#include <ATen/cuda/PhiloxUtils.cuh>

#include <tuple>

namespace ssast {
namespace {

namespace core = maskcore;

constexpr int kThreads = 32;

__global__ void __launch_bounds__(kThreads)
    masks_kernel(int64_t* __restrict__ out, uint64_t* __restrict__ workspace, int64_t words, int64_t batch, int64_t n,
                 int64_t mask_size, int64_t t_dim, bool patch, uint64_t seed, at::PhiloxCudaState philox,
                 bool graph_safe) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (b >= batch) return;
  if (graph_safe) {
    const auto state = at::cuda::philox::unpack(philox);
    seed = core::seed_from_philox(std::get<0>(state), std::get<1>(state));
  }
  core::fast_sample(seed, b, n, mask_size, t_dim, patch, workspace + b * words, out + b * mask_size);
}

}  // namespace

cudaError_t launch_masks(int64_t* out, uint64_t* workspace, int64_t batch, int64_t n, int64_t mask_size,
                         int64_t t_dim, bool patch, uint64_t seed, const at::PhiloxCudaState* philox,
                         cudaStream_t stream) {
  if (batch <= 0) return cudaSuccess;
  const int64_t words = core::workspace_words(n, mask_size, 3, patch);
  const int64_t blocks = (batch + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  masks_kernel<<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
      out, workspace, words, batch, n, mask_size, t_dim, patch, seed, philox ? *philox : at::PhiloxCudaState(),
      philox != nullptr);
  return cudaGetLastError();
}

}  // namespace ssast
