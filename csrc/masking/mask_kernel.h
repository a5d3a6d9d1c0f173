// Launcher of the CUDA mask kernel (mask_kernel.cu). Free of c10/cuda: the caller (the torch
// glue, mask_cuda.cpp) allocates, picks the stream and reads the generator.
#pragma once

#include <ATen/cuda/PhiloxCudaState.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ssast {

// Draws `batch` masks into out [batch, mask_size] (int64, device memory) on `stream`, sample b
// from xoshiro stream b (mask_core.h: fast_sample). The stream seed is `seed` (default mode), or,
// when `philox` is given, seed_from_philox(seed, offset) of that Philox state, read inside the
// kernel (graph-safe mode: a captured launch reads the state of each replay).
// `workspace` holds batch * workspace_words(n, mask_size, 3, patch) words of device memory.
// Returns the launch's error code; no host synchronisation.
cudaError_t launch_masks(int64_t* out, uint64_t* workspace, int64_t batch, int64_t n, int64_t mask_size,
                         int64_t t_dim, bool patch, uint64_t seed, const at::PhiloxCudaState* philox,
                         cudaStream_t stream);

}  // namespace ssast
