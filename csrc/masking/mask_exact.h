// Reference-exact SSAST mask generators: replay CPython's Mersenne Twister stream and
// CPython's set iteration order so the result equals the reference's Python code bit for bit.
#pragma once
#include <torch/extension.h>

namespace ssast {
void register_masking(pybind11::module& m);
}  // namespace ssast
