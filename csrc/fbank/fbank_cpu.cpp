// Kaldi fbank on the CPU: the torch-facing plan. The kernel itself (torch-free) is in
// fbank_core.h / fbank_kernel.inc; groups of frames (one per SIMD lane) are spread over
// threads with at::parallel_for.
#include "fbank/fbank_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "fbank/fbank_core.h"

namespace ssast {
namespace {

using fbank_detail::Config;
using fbank_detail::Tables;

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
    const auto win = window.to(at::kDouble).contiguous();
    const auto mel_c = mel.contiguous();
    tables_ = fbank_detail::make_tables(cfg_, win.data_ptr<double>(), mel_c.data_ptr<float>());
  }

  // waves [B, T] float32/float64 (computed in float64, returned in their dtype), lengths int64 [B], noise [B, F_max, W] or None.
  // Returns (features [B, F_max, cols], num_frames int64 [B]); rows past num_frames are zero.
  // isa: "auto" (the widest this CPU runs), or "avx512" / "avx2" / "base" to pin a kernel copy.
  std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& waves, const at::Tensor& lengths,
                                             const c10::optional<at::Tensor>& noise,
                                             const std::string& isa_name) const {
    const auto best = fbank_detail::detect_isa();
    auto isa = best;
    if (isa_name == "avx512") isa = fbank_detail::Isa::kAvx512;
    else if (isa_name == "avx2") isa = fbank_detail::Isa::kAvx2;
    else if (isa_name == "base") isa = fbank_detail::Isa::kBase;
    else TORCH_CHECK(isa_name == "auto", "isa must be auto, avx512, avx2 or base, got ", isa_name);
    TORCH_CHECK(int(isa) <= int(best), "this CPU does not support the ", isa_name, " kernel");
    const int64_t lanes = fbank_detail::isa_lanes(isa);
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
      groups += (frames[b] + lanes - 1) / lanes;
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
      // Workers pull chunks of groups from a shared counter instead of one static slice
      // each: on a shared machine a descheduled thread no longer holds up the whole batch.
      const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), groups));
      const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(32, groups / (8 * workers)));
      std::atomic<int64_t> next{0};
      at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
        for (int64_t w = begin; w < end; ++w)
          for (int64_t g; (g = next.fetch_add(chunk)) < groups;)
            fbank_detail::run_groups<scalar_t>(isa, cfg_, tables_, g, std::min(g + chunk, groups),
                                               wp, total, lp, frames.data(), group_end.data(),
                                               batch, np, nf, op, f_max);
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
           pybind11::arg("noise") = pybind11::none(), pybind11::arg("isa") = "auto",
           pybind11::call_guard<pybind11::gil_scoped_release>());
}

}  // namespace ssast
