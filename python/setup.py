"""Builds and installs the medselect Python package from the repository, offline:

    python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --no-build-isolation --no-index ./python

The extension module is the CMake target medselect_python (the same one scripts/test.sh
builds and tests): this script configures the repository one directory up in a private
build folder, builds that target (with libmedselect linked in statically) and installs the
resulting module beside medselect/__init__.py. Needs cmake, a C compiler, the libraries of
scripts/deps.sh, python3-dev and python3-numpy; nothing from PyPI.
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if not os.path.exists(os.path.join(ROOT, "CMakeLists.txt")):
            raise RuntimeError(f"{ROOT}: not the medselect repository (build from a checkout)")
        build = os.path.join(os.path.abspath(self.build_temp), "cmake")
        subprocess.check_call(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                               f"-DPython3_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", build, "--target", "medselect_python",
                               "-j", str(os.cpu_count() or 1)])
        built = glob.glob(os.path.join(build, "python", "medselect", "_medselect*.so"))
        if len(built) != 1:
            raise RuntimeError(f"{build}: the extension module was not built")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built[0], dest)


setup(
    name="medselect",
    version="0.1.0",
    description="Selective labeling of medical images (MedSelect) over libmedselect",
    packages=["medselect"],
    ext_modules=[Extension("medselect._medselect", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=[],
)
