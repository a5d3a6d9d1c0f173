// bf16 CPU attention on AMX (oneDNN brgemm through ATen's cpublas); see attention_cpu.cpp.
#pragma once
#include <torch/extension.h>

#include <tuple>

namespace ssast {

// Whether ATen's bf16 brgemm (AMX) runs on this CPU; the kernels below need it.
bool attention_cpu_supported();

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
