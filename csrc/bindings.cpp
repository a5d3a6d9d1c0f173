// Python bindings of ssast_fast._C: each op family registers its functions here.
#include <torch/extension.h>

#include "attention/attention_cpu.h"
#include "fbank/fbank_cpu.h"
#include "masking/mask_exact.h"
#include "norm/layer_norm_cpu.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ssast_fast compiled kernels (CPU)";
  ssast::register_attention(m);
  ssast::register_fbank(m);
  ssast::register_masking(m);
  ssast::register_layer_norm(m);
}
