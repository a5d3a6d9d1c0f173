// Kaldi-compatible log-mel filterbank on the CPU, batched over clips and frames.
//
// A FbankPlan holds everything that depends only on the options (window, real-FFT plan,
// sparse mel weights); Python builds one per configuration and dtype and reuses it.
#pragma once
#include <torch/extension.h>

namespace ssast {
void register_fbank(pybind11::module& m);
}  // namespace ssast
