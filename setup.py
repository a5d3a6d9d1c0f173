"""Build ssast_fast and its optional compiled extensions.

``ssast_fast._C`` (CPU kernels) compiles every ``csrc/**/*.cpp`` outside ``csrc/tests`` but the CUDA glue
``*_cuda.cpp`` against the installed torch. ``ssast_fast._C_cuda`` (CUDA kernels: ``csrc/**/*.cu`` and the glue) is
built when torch has CUDA and nvcc is found, for ``TORCH_CUDA_ARCH_LIST`` (default "8.0;9.0": A100, H100/H200);
``SSAST_FAST_NO_CUDA=1`` skips it. ``import ssast_fast`` works without either. ``SSAST_FAST_NO_EXT=1`` installs the
pure-Python package only.
"""
import glob
import os

from setuptools import find_packages, setup


def _cuda_extensions() -> list:
    """``ssast_fast._C_cuda`` when torch has CUDA and nvcc is found, else nothing."""
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


ext_modules = []
cmdclass = {}
if os.environ.get("SSAST_FAST_NO_EXT", "0") != "1":
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # csrc/tests/ holds standalone C++ tests (built by CMakeLists.txt), not extension code.
    sources = sorted(s for s in glob.glob("csrc/**/*.cpp", recursive=True)
                     if not s.startswith("csrc/tests/") and not s.endswith("_cuda.cpp"))
    ext_modules.append(
        CppExtension(
            name="ssast_fast._C",
            sources=sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args=["-O3", "-std=c++17", "-fopenmp"],
            extra_link_args=["-fopenmp"],
        )
    )
    ext_modules += _cuda_extensions()
    cmdclass["build_ext"] = BuildExtension.with_options(use_ninja=True)

setup(
    name="ssast_fast",
    version="0.1.0",
    description="Fast, faithful SSAST (self-supervised Audio Spectrogram Transformer)",
    packages=find_packages(include=["ssast_fast", "ssast_fast.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={"gpu": ["triton"], "audio": ["soundfile"], "test": ["pytest", "pytest-benchmark", "safetensors"],
                    # ssast_fast.export; requirements-export.txt pins the tested versions
                    "export": ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.5", "transformers>=5,<6",
                               "safetensors>=0.4"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": ["ssast-fast=ssast_fast.cli:main"]},
)
