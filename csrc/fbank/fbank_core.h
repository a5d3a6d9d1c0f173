// Kaldi fbank kernel, free of torch: configuration, tables, per-thread scratch and the
// per-target kernels (fbank_kernel.inc compiled for x86-64, AVX2+FMA and AVX-512). Included by
// fbank_cpu.cpp only (everything here has internal linkage), and by standalone benchmarks.
//
// Frames are processed in groups of kLanes (8 with AVX-512, 4 with AVX2+FMA, 2 otherwise) in
// "vertical" SIMD layout: every buffer is an array of V (kLanes doubles, one lane per frame), so
// each butterfly, window product, mel dot product and log is one vector instruction with
// scalar (broadcast) twiddles and weights. The copy is picked at run time (detect_isa).
//
// Everything is computed in float64 and rounded only at the output: a float32 transform
// fails golden fixtures (the mel matrix rounding of torch 2.13 vs 2.9.1 already uses ~0.6 of
// the tolerance in one case, and float32 FFT rounding error near the floor adds more). The
// speed comes from the layout, not from the precision: 8 double lanes per zmm register.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <cstdlib>
#include <immintrin.h>
#include <memory>
#include <new>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace ssast {
namespace {
namespace fbank_detail {

constexpr double kPi = 3.14159265358979323846;

struct Config {
  int64_t window_size, window_shift, n_fft, num_mel;
  bool snip_edges, remove_dc, raw_energy, use_energy, htk_compat, use_power, use_log;
  double preemph, energy_floor;

  int64_t num_frames(int64_t n) const {
    if (snip_edges) return n < window_size ? 0 : 1 + (n - window_size) / window_shift;
    return (n + window_shift / 2) / window_shift;
  }
  int64_t num_cols() const { return num_mel + (use_energy ? 1 : 0); }
};

// Tables, all float64 (the mel weights hold float32 values, as torchaudio's matrix).
struct Tables {
  std::vector<double> window;  // [W]
  bool pow2 = false;           // H = N/2 is a power of two: split-radix real FFT below
  std::vector<int> bitrev;     // [H] position of sample pair j in the bit-reversed input
  bool first_radix2 = false;   // log2(H) odd: one trivial radix-2 stage first
  std::vector<double> tw4;     // radix-4 stages L = 16, 64, ... (or 32, 128, ...):
                               // per j < L/4: W^j, W^2j, W^3j as (re, im) x 3, W = e^{-2 pi i/L}
  std::vector<double> sp;      // [H/2 + 1] x (re, im): e^{-2 pi i k / N}, real-input split
  std::vector<double> dft_re, dft_im;            // [W][H] direct DFT when H is not a power of 2
  std::vector<int> mel_start, mel_len, mel_off;  // per mel bin: first FFT bin, count, offset
  std::vector<double> mel_w;                     // concatenated non-zero weights
};

inline Tables make_tables(const Config& c, const double* window /* [W] */,
                          const float* mel /* [M, H+1] row-major */) {
  Tables t;
  const int64_t n = c.n_fft, h = n / 2;
  t.window.assign(window, window + c.window_size);
  t.pow2 = h >= 2 && (h & (h - 1)) == 0;
  if (t.pow2) {
    int bits = 0;
    while ((int64_t(1) << bits) < h) ++bits;
    t.bitrev.resize(h);
    for (int64_t k = 0; k < h; ++k) {
      int r = 0;
      for (int b = 0; b < bits; ++b) r |= ((k >> b) & 1) << (bits - 1 - b);
      t.bitrev[k] = r;
    }
    t.first_radix2 = bits % 2 == 1;
    for (int64_t len = t.first_radix2 ? 8 : 4; len <= h; len *= 4)
      for (int64_t j = 0; j < len / 4; ++j)
        for (int64_t p = 1; p <= 3; ++p) {
          const int64_t e = (p * j) % len;  // exact phase reduction
          t.tw4.push_back(std::cos(2 * kPi * double(e) / double(len)));
          t.tw4.push_back(-std::sin(2 * kPi * double(e) / double(len)));
        }
    for (int64_t k = 0; k <= h / 2; ++k) {
      t.sp.push_back(std::cos(2 * kPi * double(k) / double(n)));
      t.sp.push_back(-std::sin(2 * kPi * double(k) / double(n)));
    }
  } else {
    const int64_t w = c.window_size;
    t.dft_re.resize(w * h);
    t.dft_im.resize(w * h);
    for (int64_t j = 0; j < w; ++j)
      for (int64_t k = 0; k < h; ++k) {
        const double a = 2 * kPi * double((j * k) % n) / double(n);
        t.dft_re[j * h + k] = std::cos(a);
        t.dft_im[j * h + k] = -std::sin(a);
      }
  }
  for (int64_t m = 0; m < c.num_mel; ++m) {
    const float* row = mel + m * (h + 1);
    int64_t first = -1, last = -1;
    for (int64_t k = 0; k < h; ++k)  // the Nyquist column is zero by construction
      if (row[k] != 0.f) {
        if (first < 0) first = k;
        last = k;
      }
    t.mel_off.push_back(int(t.mel_w.size()));
    t.mel_start.push_back(first < 0 ? 0 : int(first));
    t.mel_len.push_back(first < 0 ? 0 : int(last - first + 1));
    for (int64_t k = first; first >= 0 && k <= last; ++k) t.mel_w.push_back(row[k]);
  }
  return t;
}

// A 64-byte aligned, zeroed array of n elements of type E (std::vector does not guarantee
// the alignment of vector types everywhere).
template <typename E>
class ABuf {
 public:
  explicit ABuf(int64_t n)
      : p_(static_cast<E*>(std::aligned_alloc(64, (sizeof(E) * std::max<int64_t>(n, 1) + 63) / 64 * 64))) {
    if (!p_) throw std::bad_alloc();
    std::memset(static_cast<void*>(p_), 0, sizeof(E) * n);
  }
  ABuf(const ABuf&) = delete;
  ABuf& operator=(const ABuf&) = delete;
  ~ABuf() { std::free(p_); }
  E* data() const { return p_; }

 private:
  E* p_;
};

// One copy of the kernel per target, with the widest double vector of that target as V
// (GCC splits wider generic vectors through memory, which is slow).
namespace base {
#define FBANK_LANES 2
#include "fbank/fbank_kernel.inc"
#undef FBANK_LANES
}  // namespace base

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define FBANK_LANES 4
#include "fbank/fbank_kernel.inc"
#undef FBANK_LANES
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
namespace avx512 {
#define FBANK_LANES 8
#include "fbank/fbank_kernel.inc"
#undef FBANK_LANES
}  // namespace avx512
#pragma GCC pop_options

enum class Isa { kBase, kAvx2, kAvx512 };

inline Isa detect_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
      return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
    return Isa::kBase;
  }();
  return isa;
}

// Frames per group (SIMD lanes of doubles) of each target.
inline int64_t isa_lanes(Isa isa) {
  return isa == Isa::kAvx512 ? 8 : isa == Isa::kAvx2 ? 4 : 2;
}

// Groups [g0, g1) of the flat group list (group_end[b] = groups of clips 0..b) -> `out`.
template <typename T>
void run_groups(Isa isa, const Config& c, const Tables& t, int64_t g0, int64_t g1,
                const T* waves, int64_t total, const int64_t* lengths, const int64_t* frames,
                const int64_t* group_end, int64_t batch, const T* noise, int64_t noise_frames,
                T* out, int64_t f_max) {
  switch (isa) {
    case Isa::kAvx512:
      return avx512::run_groups<T>(c, t, g0, g1, waves, total, lengths, frames, group_end, batch,
                                   noise, noise_frames, out, f_max);
    case Isa::kAvx2:
      return avx2::run_groups<T>(c, t, g0, g1, waves, total, lengths, frames, group_end, batch,
                                 noise, noise_frames, out, f_max);
    default:
      return base::run_groups<T>(c, t, g0, g1, waves, total, lengths, frames, group_end, batch,
                                 noise, noise_frames, out, f_max);
  }
}

}  // namespace fbank_detail
}  // namespace
}  // namespace ssast

#pragma GCC diagnostic pop
