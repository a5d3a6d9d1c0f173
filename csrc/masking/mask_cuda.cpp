// Torch glue of the CUDA mask kernel, module ssast_fast._C_cuda: checks, allocation, device,
// stream and generator; the kernel (mask_kernel.cu) gets plain pointers and the stream. Built
// only by setup.py's CUDA build (CUDA torch and nvcc).
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <mutex>
#include <optional>

#include "masking/mask_core.h"
#include "masking/mask_kernel.h"

namespace ssast {
namespace {

// Masks [batch, mask_size] int64 on cuda:`device`, on the current stream, no host sync.
// seed >= 0: stream seed `seed` (default mode); seed == -1: graph-safe mode, the seed comes from
// the Philox state of `generator` (default: the device's default CUDA generator).
at::Tensor cuda_masks(int64_t batch, int64_t n, int64_t mask_size, int64_t t_dim, bool patch, int64_t seed,
                      int64_t device, std::optional<at::Generator> generator) {
  TORCH_CHECK(n >= 1 && n < (int64_t{1} << 31), "cuda_masks: n_patches must be in [1, 2**31), got ", n);
  const int64_t hi = patch ? n - 2 : n;
  TORCH_CHECK(mask_size >= 1 && mask_size <= hi, "cuda_masks: mask_size must be in [1, ", hi, "], got ", mask_size);
  TORCH_CHECK(t_dim >= 1 && batch >= 0 && seed >= -1, "cuda_masks: need t_dim >= 1, batch >= 0, seed >= -1");
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const auto options = at::TensorOptions().dtype(at::kLong).device(at::kCUDA, static_cast<c10::DeviceIndex>(device));
  at::Tensor out = at::empty({batch, mask_size}, options);
  if (batch == 0) return out;
  at::Tensor workspace = at::empty({batch, maskcore::workspace_words(n, mask_size, 3, patch)}, options);
  at::PhiloxCudaState philox;
  if (seed < 0) {
    auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
        generator, at::cuda::detail::getDefaultCUDAGenerator(static_cast<c10::DeviceIndex>(device)));
    TORCH_CHECK(gen->device() == out.device(), "cuda_masks: the generator is on ", gen->device(), ", the masks on ",
                out.device());
    const std::lock_guard<std::mutex> lock(gen->mutex_);  // see CUDAGeneratorImpl.h
    philox = gen->philox_cuda_state(4);
  }
  C10_CUDA_CHECK(launch_masks(out.data_ptr<int64_t>(), reinterpret_cast<uint64_t*>(workspace.data_ptr<int64_t>()),
                              batch, n, mask_size, t_dim, patch, static_cast<uint64_t>(seed), seed < 0 ? &philox : nullptr,
                              c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream()));
  return out;
}

}  // namespace
}  // namespace ssast

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ssast_fast CUDA kernels: batched cluster and frame masks (mask_core.h on the device)";
  m.def("masks", &ssast::cuda_masks, "Masks [batch, mask_size] int64 on a CUDA device (see mask_cuda.cpp)",
        pybind11::arg("batch"), pybind11::arg("n_patches"), pybind11::arg("mask_size"), pybind11::arg("t_dim"),
        pybind11::arg("cluster"), pybind11::arg("seed"), pybind11::arg("device"), pybind11::arg("generator"));
}
