// LayerNorm of float32 CPU rows with a bfloat16 output (AVX512-BF16); see layer_norm_cpu.cpp.
#pragma once
#include <torch/extension.h>

#include <tuple>

namespace ssast {

bool layer_norm_bf16_supported();

// x float32 [..., C], weight and bias float32 [C] -> (y bf16 like x, mean [M], rstd [M]), M rows.
std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_bf16_fwd(const at::Tensor& x, const at::Tensor& weight,
                                                                   const at::Tensor& bias, double eps);

// dy bf16 like x -> (dx float32 like x, dweight [C], dbias [C]).
std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_bf16_bwd(const at::Tensor& dy, const at::Tensor& x,
                                                                   const at::Tensor& mean, const at::Tensor& rstd,
                                                                   const at::Tensor& weight);

void register_layer_norm(pybind11::module_& m);

}  // namespace ssast
