"""Build ssast_fast and its optional C++ extension ``ssast_fast._C``.

The extension compiles every ``csrc/**/*.cpp`` outside ``csrc/tests`` against the installed torch (CPU); set
``SSAST_FAST_NO_EXT=1`` to install the pure-Python package only.
"""
import glob
import os

from setuptools import find_packages, setup

ext_modules = []
cmdclass = {}
if os.environ.get("SSAST_FAST_NO_EXT", "0") != "1":
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # csrc/tests/ holds standalone C++ tests (built by CMakeLists.txt), not extension code.
    sources = sorted(s for s in glob.glob("csrc/**/*.cpp", recursive=True) if not s.startswith("csrc/tests/"))
    ext_modules.append(
        CppExtension(
            name="ssast_fast._C",
            sources=sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args=["-O3", "-std=c++17", "-fopenmp"],
            extra_link_args=["-fopenmp"],
        )
    )
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
