// Kaldi fbank on the CPU. Frames are processed kLanes at a time in "vertical" SIMD layout:
// every buffer is [position][lane], so each butterfly, window product and mel dot product is a
// plain loop over lanes that the compiler vectorizes, with scalar (broadcast) twiddles and
// weights. Groups of frames are spread over threads with at::parallel_for.
//
// Per frame, in Kaldi's order: gather (with mirroring when snip_edges is false) and optional
// dither, DC removal, raw log energy, pre-emphasis (first sample is its own predecessor),
// window, zero-padded real FFT, power (or magnitude), sparse mel weights, log with the float
// epsilon floor, energy column.
#include "fbank/fbank_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace ssast {
namespace {

constexpr int64_t kLanes = 8;
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

// Tables, all float64: the kernel computes in float64 whatever the input dtype and rounds
// only the output, so its error is far below float32 torchaudio's.
struct Tables {
  std::vector<double> window;          // [W]
  std::vector<int> bitrev;             // [H]      (power-of-two H only)
  std::vector<double> tw_re, tw_im;    // [H/2]    exp(-2 pi i m / H)
  std::vector<double> sp_re, sp_im;    // [H]      exp(-2 pi i k / N), real-input split
  std::vector<double> dft_re, dft_im;  // [W][H]   direct DFT when H is not a power of two
  std::vector<int> mel_start, mel_len, mel_off;  // per mel bin: first FFT bin, count, offset
  std::vector<double> mel_w;           // concatenated non-zero weights (float32 values)
};

Tables make_tables(const Config& c, const at::Tensor& window /* [W] f64 */,
                   const at::Tensor& mel /* [M, H+1] f32 */) {
  Tables t;
  const int64_t n = c.n_fft, h = n / 2;
  t.window.assign(window.data_ptr<double>(), window.data_ptr<double>() + window.numel());
  if ((h & (h - 1)) == 0) {
    int bits = 0;
    while ((int64_t(1) << bits) < h) ++bits;
    t.bitrev.resize(h);
    for (int64_t k = 0; k < h; ++k) {
      int r = 0;
      for (int b = 0; b < bits; ++b) r |= ((k >> b) & 1) << (bits - 1 - b);
      t.bitrev[k] = r;
    }
    for (int64_t m = 0; m < h / 2; ++m) {
      t.tw_re.push_back(std::cos(2 * kPi * m / h));
      t.tw_im.push_back(-std::sin(2 * kPi * m / h));
    }
    for (int64_t k = 0; k < h; ++k) {
      t.sp_re.push_back(std::cos(2 * kPi * k / n));
      t.sp_im.push_back(-std::sin(2 * kPi * k / n));
    }
  } else {
    const int64_t w = c.window_size;
    t.dft_re.resize(w * h);
    t.dft_im.resize(w * h);
    for (int64_t j = 0; j < w; ++j)
      for (int64_t k = 0; k < h; ++k) {
        const double a = 2 * kPi * double((j * k) % n) / n;  // exact phase reduction
        t.dft_re[j * h + k] = std::cos(a);
        t.dft_im[j * h + k] = -std::sin(a);
      }
  }
  auto acc = mel.accessor<float, 2>();
  for (int64_t m = 0; m < c.num_mel; ++m) {
    int64_t first = -1, last = -1;
    for (int64_t k = 0; k < h; ++k)  // the Nyquist column is zero by construction
      if (acc[m][k] != 0.f) {
        if (first < 0) first = k;
        last = k;
      }
    t.mel_off.push_back(int(t.mel_w.size()));
    t.mel_start.push_back(first < 0 ? 0 : int(first));
    t.mel_len.push_back(first < 0 ? 0 : int(last - first + 1));
    for (int64_t k = first; first >= 0 && k <= last; ++k) t.mel_w.push_back(acc[m][k]);
  }
  return t;
}

// Per-thread scratch, [position][lane]. The frame tail [W, N) stays zero (FFT padding).
struct Scratch {
  std::vector<double> frame, re, im, spec, mel, logmel, energy;
  explicit Scratch(const Config& c)
      : frame(c.n_fft * kLanes, 0.0), re(c.n_fft / 2 * kLanes), im(c.n_fft / 2 * kLanes),
        spec(c.n_fft / 2 * kLanes), mel(c.num_mel * kLanes), logmel(c.num_mel * kLanes),
        energy(kLanes) {}
};

namespace base {
#include "fbank/fbank_kernel.inc"
}  // namespace base

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "fbank/fbank_kernel.inc"
}  // namespace avx2
#pragma GCC pop_options

bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

class FbankPlan {
 public:
  FbankPlan(const at::Tensor& window, const at::Tensor& mel, int64_t window_shift,
            int64_t n_fft, bool snip_edges, bool remove_dc, double preemph, bool raw_energy,
            double energy_floor, bool use_energy, bool htk_compat, bool use_power, bool use_log) {
    TORCH_CHECK(window.dim() == 1 && window.is_floating_point(), "window must be 1-D float");
    TORCH_CHECK(n_fft >= 2 && n_fft % 2 == 0 && n_fft >= window.size(0), "bad n_fft ", n_fft);
    TORCH_CHECK(window_shift > 0, "window_shift must be > 0");
    TORCH_CHECK(mel.dim() == 2 && mel.scalar_type() == at::kFloat &&
                    mel.size(1) == n_fft / 2 + 1 && mel.size(0) > 0,
                "mel must be float32 [num_mel, n_fft/2 + 1]");
    cfg_ = Config{window.size(0), window_shift, n_fft, mel.size(0), snip_edges,
                  remove_dc,      raw_energy,   use_energy, htk_compat, use_power,
                  use_log,        preemph,      energy_floor};
    tables_ = make_tables(cfg_, window.to(at::kDouble).contiguous(), mel.contiguous());
  }

  // waves [B, T] float32/float64 (computed in float64, returned in their dtype), lengths int64 [B], noise [B, F_max, W] or None.
  // Returns (features [B, F_max, cols], num_frames int64 [B]); rows past num_frames are zero.
  std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& waves, const at::Tensor& lengths,
                                             const c10::optional<at::Tensor>& noise) const {
    TORCH_CHECK(waves.dim() == 2 && waves.device().is_cpu(), "waves must be a CPU [B, T] tensor");
    TORCH_CHECK(waves.scalar_type() == at::kFloat || waves.scalar_type() == at::kDouble,
                "waves must be float32 or float64");
    TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == waves.size(0) &&
                    lengths.scalar_type() == at::kLong && lengths.device().is_cpu(),
                "lengths must be a CPU int64 [B] tensor");
    const int64_t batch = waves.size(0), total = waves.size(1);
    auto wav = waves.contiguous();
    auto len = lengths.contiguous();
    const int64_t* lp = len.data_ptr<int64_t>();
    std::vector<int64_t> frames(batch), group_end(batch);
    int64_t f_max = 0, groups = 0;
    for (int64_t b = 0; b < batch; ++b) {
      TORCH_CHECK(lp[b] >= cfg_.window_size && lp[b] <= total, "length ", lp[b],
                  " of clip ", b, " outside [window_size, T]");
      frames[b] = cfg_.num_frames(lp[b]);
      f_max = std::max(f_max, frames[b]);
      groups += (frames[b] + kLanes - 1) / kLanes;
      group_end[b] = groups;
    }
    at::Tensor nz;
    if (noise.has_value()) {
      nz = noise->contiguous();
      TORCH_CHECK(nz.scalar_type() == waves.scalar_type() && nz.dim() == 3 && nz.size(0) == batch &&
                      nz.size(1) >= f_max && nz.size(2) == cfg_.window_size,
                  "noise must be [B, F_max, window_size] in the waves dtype");
    }
    const int64_t cols = cfg_.num_cols();
    auto out = at::empty({batch, f_max, cols}, wav.options());
    AT_DISPATCH_FLOATING_TYPES(wav.scalar_type(), "ssast_fbank_cpu", [&] {
      const scalar_t* wp = wav.data_ptr<scalar_t>();
      const scalar_t* np = nz.defined() ? nz.data_ptr<scalar_t>() : nullptr;
      scalar_t* op = out.data_ptr<scalar_t>();
      const int64_t nf = nz.defined() ? nz.size(1) : 0;
      const bool wide = cpu_has_avx2_fma();
      at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
        (wide ? avx2::run_groups<scalar_t> : base::run_groups<scalar_t>)(
            cfg_, tables_, begin, end, wp, total, lp, frames.data(), group_end, np, nf, op,
            f_max);
      });
      for (int64_t b = 0; b < batch; ++b)
        std::memset(op + (b * f_max + frames[b]) * cols, 0,
                    sizeof(scalar_t) * (f_max - frames[b]) * cols);
    });
    return {out, at::tensor(frames, at::kLong)};
  }

 private:
  Config cfg_;
  Tables tables_;
};

}  // namespace

void register_fbank(pybind11::module& m) {
  pybind11::class_<FbankPlan>(m, "FbankPlan",
                              "Kaldi fbank for one option set: window, FFT plan, mel weights.")
      .def(pybind11::init<const at::Tensor&, const at::Tensor&, int64_t, int64_t, bool, bool,
                          double, bool, double, bool, bool, bool, bool>(),
           pybind11::arg("window"), pybind11::arg("mel"), pybind11::arg("window_shift"),
           pybind11::arg("n_fft"), pybind11::arg("snip_edges"), pybind11::arg("remove_dc"),
           pybind11::arg("preemph"), pybind11::arg("raw_energy"),
           pybind11::arg("energy_floor"), pybind11::arg("use_energy"),
           pybind11::arg("htk_compat"), pybind11::arg("use_power"), pybind11::arg("use_log"))
      .def("forward", &FbankPlan::forward, pybind11::arg("waves"), pybind11::arg("lengths"),
           pybind11::arg("noise") = pybind11::none(),
           pybind11::call_guard<pybind11::gil_scoped_release>());
}

}  // namespace ssast
