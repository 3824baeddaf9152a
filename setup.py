"""The one compiled piece: train/crop_resize.cpp, the training decoder's per-image work
(libjpeg partial decoding, resizing with SSSE3 or OpenCV). Everything else is declared in pyproject.toml."""
import shutil
import subprocess
import sys

from setuptools import Extension, setup


def opencv_include_dirs() -> list[str]:
    if not shutil.which('pkg-config') or subprocess.run(['pkg-config', '--exists', 'opencv4']).returncode:
        sys.exit('error: pkg-config cannot find OpenCV 4 headers: install libopencv-dev libjpeg-dev '
                 'pkg-config (`make setup` does) and retry')
    flags = subprocess.run(['pkg-config', '--cflags-only-I', 'opencv4'], check=True, capture_output=True,
                           text=True).stdout.split()
    return [f[2:] for f in flags]


setup(ext_modules=[Extension(
    'fastimagenet.train._crop_resize',
    sources=['train/crop_resize.cpp'],
    include_dirs=opencv_include_dirs(),
    libraries=['jpeg', 'opencv_imgproc', 'opencv_core'],
    extra_compile_args=['-O3', '-std=c++17'],
    language='c++',
)])
