"""Build the compiled extension ``ssast_fast._C``; the package metadata is in pyproject.toml.

The extension compiles every ``csrc/**/*.cpp`` outside ``csrc/tests`` against the torch
installed where it is built, so build without isolation: ``pip install --no-build-isolation .``
(docs/install.md). ``SSAST_FAST_NO_EXT=1`` builds the pure-Python package instead.
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
                     if not s.startswith("csrc/tests/"))
    return CppExtension(
        name="ssast_fast._C",
        sources=sources,
        include_dirs=[os.path.abspath("csrc")],
        extra_compile_args=["-O3", "-std=c++17", "-fopenmp"],
        extra_link_args=["-fopenmp"],
    )


if os.environ.get("SSAST_FAST_NO_EXT", "0") == "1":
    setup()
else:
    try:
        from torch.utils.cpp_extension import BuildExtension
    except ImportError:
        sys.exit(NO_TORCH)
    setup(ext_modules=[cpu_extension()],
          cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
