// bf16 CPU attention on oneDNN's brgemm through ATen's cpublas (AMX tiles where present, else
// AVX512-BF16); see attention_cpu.cpp.
#pragma once
#include <torch/extension.h>

#include <string>
#include <tuple>

namespace ssast {

// Whether the kernels below run here: AVX512-BF16, and ATen's bf16 brgemm passes a one-time
// self-test against float32 products (run at the first call).
bool attention_cpu_supported();

// The brgemm code path in use: "amx" (AMX-BF16 tiles), "avx512_bf16" (vdpbf16ps), or "none".
std::string attention_cpu_isa();

// q, k, v: bf16 [B, H, N, D] (D even, <= 256; rows of D contiguous values, any other strides).
// -> out [B, H, N, D] (memory laid out as [B, N, H, D]), lse [B, H, N] float32 (natural log).
std::tuple<at::Tensor, at::Tensor> attention_cpu_fwd(const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v, double scale);

// -> (dq, dk, dv), contiguous bf16 [B, H, N, D].
std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_cpu_bwd(const at::Tensor& dout, const at::Tensor& q,
                                                                 const at::Tensor& k, const at::Tensor& v,
                                                                 const at::Tensor& out, const at::Tensor& lse,
                                                                 double scale);

// The same for q, k, v packed as qkv [B, N, 3, H, D] (the qkv projection's layout; q = qkv[:, :, 0]
// as [B, H, N, D]) -> dqkv in that layout, written in place (no stacking copy).
at::Tensor attention_cpu_bwd_packed(const at::Tensor& dout, const at::Tensor& qkv, const at::Tensor& out,
                                    const at::Tensor& lse, double scale);

void register_attention(pybind11::module_& m);

}  // namespace ssast
