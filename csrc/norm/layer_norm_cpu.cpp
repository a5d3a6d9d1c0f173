// LayerNorm over the last dim of float32 CPU rows with the output rounded to bfloat16, and its
// backward. It is the encoder's norm1 / norm2 under CPU bf16 autocast, where the Linear after
// the norm casts the float32 output to bf16 anyway: fusing that cast saves one pass over the
// activations each way. Math in float32 as ATen's LayerNorm: mean, biased variance,
// rstd = 1 / sqrt(var + eps), y = (x - mean) * rstd * weight + bias.
#include "norm/layer_norm_cpu.h"

#include "common/avx512_bf16.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <vector>

namespace ssast {
namespace {

using at::BFloat16;
using avx512::load_bf16;
using avx512::tail_mask;

// With a residual h (bf16, may be null): s = x + h is written to `sum` and normalised instead.
SSAST_AVX512 void fwd_rows(const float* x, const BFloat16* h, float* sum, int64_t r0, int64_t r1, int64_t C,
                           const float* w, const float* b, float eps, BFloat16* y, float* mean, float* rstd) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    if (h) {  // s = x + h, then normalise s
      float* sr = sum + r * C;
      for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = tail_mask(C - c);
        _mm512_mask_storeu_ps(sr + c, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, xr + c), load_bf16(h + r * C + c, m)));
      }
      xr = sr;
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c += 16) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail_mask(C - c), xr + c));
    const float mu = _mm512_reduce_add_ps(acc) / C;
    const __m512 vmu = _mm512_set1_ps(mu);
    acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 m = tail_mask(C - c);
      const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + c), vmu);
      acc = _mm512_fmadd_ps(d, d, acc);
    }
    const float rs = 1.0f / std::sqrt(_mm512_reduce_add_ps(acc) / C + eps);
    const __m512 vrs = _mm512_set1_ps(rs);
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 m = tail_mask(C - c);
      const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + c), vmu), vrs);
      const __m512 out = _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(m, w + c), _mm512_maskz_loadu_ps(m, b + c));
      avx512::store_bf16(y + r * C + c, out, m);
    }
    mean[r] = mu;
    rstd[r] = rs;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight; dw += dy * xhat, db += dy.
// With a residual (ds may be null): dx += ds and dh = bf16(dx), the gradient of s = x + h.
SSAST_AVX512 void bwd_rows(const BFloat16* dy, const float* x, const float* mean, const float* rstd, const float* w,
                           int64_t r0, int64_t r1, int64_t C, float* dx, float* dw, float* db, const float* ds,
                           BFloat16* dh) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    const __m512 vmu = _mm512_set1_ps(mean[r]), vrs = _mm512_set1_ps(rstd[r]);
    __m512 sg = _mm512_setzero_ps(), sgx = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 m = tail_mask(C - c);
      const __m512 d = load_bf16(dy + r * C + c, m);
      const __m512 xh = _mm512_mul_ps(_mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + c), vmu), vrs);
      const __m512 g = _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + c));
      sg = _mm512_add_ps(sg, g);
      sgx = _mm512_fmadd_ps(g, xh, sgx);
      _mm512_mask_storeu_ps(dw + c, m, _mm512_fmadd_ps(d, xh, _mm512_maskz_loadu_ps(m, dw + c)));
      _mm512_mask_storeu_ps(db + c, m, _mm512_add_ps(d, _mm512_maskz_loadu_ps(m, db + c)));
    }
    const __m512 a = _mm512_set1_ps(_mm512_reduce_add_ps(sg) / C), bt = _mm512_set1_ps(_mm512_reduce_add_ps(sgx) / C);
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 m = tail_mask(C - c);
      const __m512 d = load_bf16(dy + r * C + c, m);
      const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + c), vmu), vrs);
      const __m512 g = _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + c));
      __m512 out = _mm512_mul_ps(vrs, _mm512_sub_ps(_mm512_sub_ps(g, a), _mm512_mul_ps(xh, bt)));
      if (ds) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(m, ds + r * C + c));
      _mm512_mask_storeu_ps(dx + r * C + c, m, out);
      if (dh) avx512::store_bf16(dh + r * C + c, out, m);
    }
  }
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "layer_norm_bf16: ", what); }

}  // namespace

bool layer_norm_bf16_supported() {
  static const bool ok = avx512::cpu_has_avx512_bf16();
  return ok;
}

namespace {

void check_params(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  check(layer_norm_bf16_supported(), "this CPU lacks AVX512-BF16");
  check(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() >= 1, "x must be float32 CPU [..., C]");
  const int64_t C = x.size(-1);
  check(weight.scalar_type() == at::kFloat && bias.scalar_type() == at::kFloat && weight.numel() == C &&
            bias.numel() == C,
        "weight and bias must be float32 [C]");
}

// y = LN(x) (h undefined) or LN(x + h) with s = x + h written to `sum`.
std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_impl(const at::Tensor& x_in, const at::Tensor& h_in, at::Tensor* sum,
                                                        const at::Tensor& weight, const at::Tensor& bias, double eps) {
  check_params(x_in, weight, bias);
  const int64_t C = x_in.size(-1);
  const at::Tensor x = x_in.contiguous(), w = weight.contiguous(), b = bias.contiguous();
  at::Tensor h;
  if (h_in.defined()) {
    check(h_in.scalar_type() == at::kBFloat16 && h_in.sizes() == x_in.sizes(), "h must be bf16 shaped like x");
    h = h_in.contiguous();
    *sum = at::empty(x.sizes(), x.options());
  }
  const int64_t M = C ? x.numel() / C : 0;
  at::Tensor y = at::empty(x.sizes(), x.options().dtype(at::kBFloat16));
  at::Tensor mean = at::empty({M}, x.options()), rstd = at::empty({M}, x.options());
  if (M * C == 0) return {y, mean, rstd};
  const float e = static_cast<float>(eps);
  at::parallel_for(0, M, 64, [&](int64_t r0, int64_t r1) {
    fwd_rows(x.data_ptr<float>(), h.defined() ? h.data_ptr<BFloat16>() : nullptr,
             h.defined() ? sum->data_ptr<float>() : nullptr, r0, r1, C, w.data_ptr<float>(), b.data_ptr<float>(), e,
             y.data_ptr<BFloat16>(), mean.data_ptr<float>(), rstd.data_ptr<float>());
  });
  return {y, mean, rstd};
}

// (dx, dweight, dbias) and, with a residual, dh = bf16(dx) where dx includes ds.
std::tuple<at::Tensor, at::Tensor, at::Tensor> bwd_impl(const at::Tensor& dy_in, const at::Tensor& x_in,
                                                        const at::Tensor& mean, const at::Tensor& rstd,
                                                        const at::Tensor& weight, const at::Tensor& ds_in,
                                                        at::Tensor* dh) {
  check(layer_norm_bf16_supported(), "this CPU lacks AVX512-BF16");
  check(dy_in.scalar_type() == at::kBFloat16 && dy_in.sizes() == x_in.sizes(), "dy must be bf16 shaped like x");
  const int64_t C = x_in.size(-1);
  const at::Tensor dy = dy_in.contiguous(), x = x_in.contiguous(), w = weight.contiguous();
  at::Tensor ds;
  if (ds_in.defined()) {
    check(ds_in.scalar_type() == at::kFloat && ds_in.sizes() == x_in.sizes(), "ds must be float32 shaped like x");
    ds = ds_in.contiguous();
  }
  const int64_t M = C ? x.numel() / C : 0;
  check(mean.numel() == M && rstd.numel() == M, "mean and rstd must hold one value per row");
  at::Tensor dx = at::empty(x.sizes(), x.options());
  if (dh) *dh = at::empty(x.sizes(), x.options().dtype(at::kBFloat16));
  const int nt = at::get_num_threads();
  at::Tensor part = at::zeros({nt, 2, C}, x.options());  // per-thread dw, db
  if (M * C > 0) {
    at::parallel_for(0, M, 64, [&](int64_t r0, int64_t r1) {
      float* p = part.data_ptr<float>() + at::get_thread_num() * 2 * C;
      bwd_rows(dy.data_ptr<BFloat16>(), x.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
               w.data_ptr<float>(), r0, r1, C, dx.data_ptr<float>(), p, p + C,
               ds.defined() ? ds.data_ptr<float>() : nullptr, dh ? dh->data_ptr<BFloat16>() : nullptr);
    });
  }
  return {dx, part.select(1, 0).sum(0).view(weight.sizes()), part.select(1, 1).sum(0).view(weight.sizes())};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_bf16_fwd(const at::Tensor& x, const at::Tensor& weight,
                                                                   const at::Tensor& bias, double eps) {
  return fwd_impl(x, at::Tensor(), nullptr, weight, bias, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_bf16_bwd(const at::Tensor& dy, const at::Tensor& x,
                                                                   const at::Tensor& mean, const at::Tensor& rstd,
                                                                   const at::Tensor& weight) {
  return bwd_impl(dy, x, mean, rstd, weight, at::Tensor(), nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_bf16_fwd(const at::Tensor& x,
                                                                                   const at::Tensor& h,
                                                                                   const at::Tensor& weight,
                                                                                   const at::Tensor& bias, double eps) {
  check(h.defined(), "h must be given");
  at::Tensor sum;
  auto [y, mean, rstd] = fwd_impl(x, h, &sum, weight, bias, eps);
  return {sum, y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_bf16_bwd(
    const std::optional<at::Tensor>& ds, const at::Tensor& dy, const at::Tensor& s, const at::Tensor& mean,
    const at::Tensor& rstd, const at::Tensor& weight) {
  at::Tensor dh;
  auto [dx, dw, db] = bwd_impl(dy, s, mean, rstd, weight, ds.has_value() ? *ds : at::Tensor(), &dh);
  return {dx, dh, dw, db};
}

void register_layer_norm(pybind11::module_& m) {
  m.def("layer_norm_bf16_supported", &layer_norm_bf16_supported, "Whether the CPU runs the AVX512-BF16 LayerNorm");
  m.def("layer_norm_bf16_fwd", &layer_norm_bf16_fwd, "LayerNorm of float32 rows -> (y bf16, mean, rstd)");
  m.def("layer_norm_bf16_bwd", &layer_norm_bf16_bwd, "LayerNorm backward -> (dx float32, dweight, dbias)");
  m.def("add_layer_norm_bf16_fwd", &add_layer_norm_bf16_fwd,
        "s = x + h (h bf16), LayerNorm of s -> (s float32, y bf16, mean, rstd)");
  m.def("add_layer_norm_bf16_bwd", &add_layer_norm_bf16_bwd,
        "backward of add_layer_norm_bf16 -> (dx float32, dh bf16, dweight, dbias); ds may be None");
}

}  // namespace ssast
