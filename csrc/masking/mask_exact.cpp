#include "masking/mask_exact.h"
namespace ssast {
void register_masking(pybind11::module& m) {}
}  // namespace ssast
