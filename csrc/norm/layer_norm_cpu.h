// LayerNorm of float32 CPU rows with a bfloat16 output (AVX512-BF16); see layer_norm_cpu.cpp.
#pragma once
#include <torch/extension.h>

#include <optional>
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

// Residual add fused in: s = x + h (h bf16 like x), then the LayerNorm of s -> (s float32, y bf16,
// mean, rstd). The next block's residual stream is s; y feeds its Linear.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_bf16_fwd(const at::Tensor& x,
                                                                                   const at::Tensor& h,
                                                                                   const at::Tensor& weight,
                                                                                   const at::Tensor& bias, double eps);

// ds: the gradient of s from the residual stream (None: zero); dy: of y (bf16). -> (dx float32,
// dh = bf16(dx), dweight, dbias), where dx = ds + the LayerNorm backward of dy.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_bf16_bwd(
    const std::optional<at::Tensor>& ds, const at::Tensor& dy, const at::Tensor& s, const at::Tensor& mean,
    const at::Tensor& rstd, const at::Tensor& weight);

void register_layer_norm(pybind11::module_& m);

}  // namespace ssast
