"""Build the compiled extensions; the package metadata is in pyproject.toml.

``ssast_fast._C`` (CPU kernels) compiles every ``csrc/**/*.cpp`` outside ``csrc/tests`` but the
CUDA glue ``*_cuda.cpp``, against the torch installed where it is built, so build without
isolation: ``pip install --no-build-isolation .`` (docs/install.md). ``ssast_fast._C_cuda`` (CUDA
kernels: ``csrc/**/*.cu`` and the glue) is built when torch has CUDA and nvcc is found, for
``TORCH_CUDA_ARCH_LIST`` (default "8.0;9.0": A100, H100/H200); ``SSAST_FAST_NO_CUDA=1`` skips it.
``SSAST_FAST_NO_EXT=1`` builds the pure-Python package instead. ``import ssast_fast`` works
without either extension.
"""
import glob
import os
import sys

from setuptools import setup

NO_TORCH = """
ssast-fast: torch is not importable in this build environment.
The C++ extension is compiled against the torch you run it with, so install torch first and
build without isolation:
    pip install torch
    pip install --no-build-isolation .
(or SSAST_FAST_NO_EXT=1 pip install . for the pure-Python package, without the C++ kernels)
"""


def cpu_extension():
    """ssast_fast._C: the CPU kernels (C++17, OpenMP); csrc/tests holds standalone C++ tests."""
    from torch.utils.cpp_extension import CppExtension

    sources = sorted(s for s in glob.glob("csrc/**/*.cpp", recursive=True)
                     if not s.startswith("csrc/tests/") and not s.endswith("_cuda.cpp"))
    return CppExtension(
        name="ssast_fast._C",
        sources=sources,
        include_dirs=[os.path.abspath("csrc")],
        extra_compile_args=["-O3", "-std=c++17", "-fopenmp"],
        extra_link_args=["-fopenmp"],
    )


def cuda_extensions() -> list:
    """[ssast_fast._C_cuda] when torch has CUDA and nvcc is found, else []."""
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, CUDAExtension

    if os.environ.get("SSAST_FAST_NO_CUDA", "0") == "1" or torch.version.cuda is None:
        return []
    if CUDA_HOME is None or not os.path.isfile(os.path.join(CUDA_HOME, "bin", "nvcc")):
        print("setup.py: torch has CUDA but nvcc was not found (set CUDA_HOME): ssast_fast._C_cuda not built")
        return []
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    sources = sorted(glob.glob("csrc/**/*.cu", recursive=True) + glob.glob("csrc/**/*_cuda.cpp", recursive=True))
    return [CUDAExtension(
        name="ssast_fast._C_cuda",
        sources=sources,
        include_dirs=[os.path.abspath("csrc")],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
    )]


if os.environ.get("SSAST_FAST_NO_EXT", "0") == "1":
    setup()
else:
    try:
        from torch.utils.cpp_extension import BuildExtension
    except ImportError:
        sys.exit(NO_TORCH)
    setup(ext_modules=[cpu_extension()] + cuda_extensions(),
          cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
