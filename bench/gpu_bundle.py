"""Gather into one folder what an air-gapped CUDA node lacks to run the GPU check (make gpu-bundle).

    python bench/gpu_bundle.py [--out gpu-bundle]

Run on a connected Debian 12 machine of the node's architecture (this project's CI machine is
one). The node it is for has a CUDA PyTorch and a C++ compiler but no package index, no apt
and no network: Python 3.11+ (3.12 on the node we design for) with torch, torchvision, numba,
opencv-python-headless, pandas, pillow, pytest, timm, tqdm and matplotlib. On the node:

    python3 BUNDLE/build_and_check.py      # builds into BUNDLE/work, then runs bench/gpu_check.py

The folder (at most 60 MiB, so it fits the 64 MiB a node's users may bring) holds:

    build_and_check.py   the node's side (bench/gpu/build_and_check.py; standard library only)
    manifest.json        every file's sha256, versions, and what the libraries need of the node
    python/              sdists of ffcv, fastargs, PyYAML and psutil (built there, by the node's
                         own python3); pure-Python wheels of pip, setuptools and wheel to build them,
                         and of terminaltables (fastargs imports it; its sdist needs poetry)
    prefix/usr/          libjpeg-turbo and OpenCV's core and imgproc: headers, pkg-config files,
                         shared libraries and what they link to, from Debian packages
                         (apt-get download, dpkg-deb -x into this folder, never over /)
    fastimagenet.tar.gz  the project's source: the working tree's files that git tracks or would

What the node has already is not installed: PyYAML only where `import yaml` fails (timm
requires it, so a node with timm has it), psutil (the tests and the check kill process trees
with it) only where it is missing. ffcv installs without its declared dependencies, which the
node has (numba, tqdm; its cv2 is opencv-python-headless, not the opencv-python ffcv names),
which come here (fastargs, psutil), or which ffcv imports only in its benchmarks and its CuPy
path (assertpy, pytorch_pfn_extras). The CUDA tests need pytest alone of the dev extra.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from fastimagenet.common.cli import fail, run

ROOT = Path(__file__).resolve().parent.parent
KIND = 'fastimagenet-gpu-bundle'
LIMIT = 60 * 2**20
NODE_SCRIPT = ROOT / 'bench' / 'gpu' / 'build_and_check.py'

# Built on the node, so shipped as source; pinned to what this environment runs.
SDISTS = ('ffcv', 'fastargs', 'PyYAML', 'psutil')
# Pure Python, nothing in them depends on the node's python: pip, setuptools and wheel build the
# rest; fastargs imports terminaltables without declaring it, and its sdist builds only with poetry.
WHEELS = ('pip', 'setuptools', 'wheel', 'terminaltables')
BUILD_TOOLS = ('pip', 'setuptools', 'wheel')
IF_MISSING = {'PyYAML': 'yaml', 'psutil': 'psutil'}  # installed only where this module does not import

# Debian 12 (bookworm) names. Headers: ffcv includes <opencv2/opencv.hpp>, which includes the
# header of every main module, so all their -dev packages come (for headers only); libraries:
# only what ffcv and train/crop_resize.cpp call (cv::resize, cv::Mat: core, imgproc) and
# what those link to. opencv4.pc is cut down to them: the full list (55 modules) would drag
# in GTK, FFmpeg, GDAL and VTK.
HEADER_PACKAGES = [f'libopencv-{m}-dev' for m in (
    'core', 'imgproc', 'calib3d', 'features2d', 'dnn', 'flann', 'highgui', 'imgcodecs', 'ml',
    'objdetect', 'photo', 'stitching', 'video', 'videoio')] + ['libopencv-dev', 'libjpeg62-turbo-dev',
                                                                'libturbojpeg0-dev']
LIBRARY_PACKAGES = ['libopencv-core406', 'libopencv-imgproc406', 'libjpeg62-turbo', 'libturbojpeg0',
                    # libopencv_core's own dependencies (libblas3/liblapack3: the reference builds)
                    'libtbb12', 'libblas3', 'liblapack3', 'libgfortran5', 'libquadmath0', 'libglx0',
                    'libglvnd0', 'libx11-6', 'libxcb1', 'libxau6', 'libxdmcp6', 'libbsd0', 'libmd0',
                    # pkg-config, for a node without one (build_and_check.py uses the node's if it has one)
                    'pkgconf-bin', 'libpkgconf3']
OPENCV_LIBS = '-L${libdir} -lopencv_imgproc -lopencv_core'
ROOTS = ('libopencv_core.so.406', 'libopencv_imgproc.so.406', 'libjpeg.so.62', 'libturbojpeg.so.0')
# Every glibc system has these; everything else the roots need must be in the prefix.
BASE_SONAMES = {'libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1', 'libstdc++.so.6',
                'libgcc_s.so.1', 'libz.so.1', 'ld-linux-x86-64.so.2', 'ld-linux-aarch64.so.1'}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default=str(ROOT / 'gpu-bundle'), help='the folder to write (replaced if it is a bundle)')
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    check_tools()
    if out.exists() and not (out / 'manifest.json').is_file():
        fail(f'{out} exists and is not a GPU bundle: choose another --out')
    start = time.time()
    # Written beside --out under a temporary name, renamed into place when complete: an
    # interrupted run never leaves a half bundle that looks whole.
    stage = out.with_name(f'{out.name}.tmp-{os.getpid()}')
    remove_stale_stages(out)
    try:
        with tempfile.TemporaryDirectory(prefix='gpu-bundle-') as tmp:
            stage.mkdir(parents=True)
            python = download_python(stage / 'python', Path(tmp) / 'pip')
            debs = download_debs(Path(tmp) / 'debs')
            needs = unpack_prefix(debs, stage / 'prefix')
        source = archive_source(stage / 'fastimagenet.tar.gz', skip=(out, stage))
        shutil.copy(NODE_SCRIPT, stage / NODE_SCRIPT.name)
        files = {str(p.relative_to(stage)): sha256(p) for p in sorted(stage.rglob('*'))
                 if p.is_file() and not p.is_symlink()}
        manifest = {'kind': KIND, 'created': time.strftime('%Y-%m-%d %H:%M:%S %z'), 'machine': platform.machine(),
                    'built_on': os_release(), 'python': python, 'debs': {d['name']: d['version'] for d in debs},
                    'prefix': prefix_layout(stage / 'prefix'), 'needs': needs, 'source': source,
                    'node_script': NODE_SCRIPT.name, 'files': files}
        (stage / 'manifest.json').write_text(json.dumps(manifest, indent=1) + '\n')
        size = folder_size(stage)
        if size > LIMIT:
            fail(f'the bundle came to {size / 2**20:.1f} MiB, over the {LIMIT // 2**20} MiB limit')
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    print(f'wrote {out} ({size / 2**20:.1f} MiB, {len(files)} files) in {time.time() - start:.0f} s:')
    for item in python:
        print(f'  python/{item["file"]}')
    print(f'  prefix/usr: {len(debs)} Debian packages unpacked ({folder_size(out / "prefix") / 2**20:.1f} MiB); '
          f'the node needs glibc >= {needs["glibc"]} and a libstdc++ with GLIBCXX_{needs["glibcxx"]}')
    print(f'  fastimagenet.tar.gz: {source["files"]} files of {source["commit"][:12]}'
          f'{" with uncommitted changes" if source["dirty"] else ""}')
    print(f'on the node: python3 {out.name}/{NODE_SCRIPT.name}')


def remove_stale_stages(out: Path) -> None:
    """Folders a killed earlier run left beside --out (its pid is gone)."""
    for stale in out.parent.glob(f'{out.name}.tmp-*'):
        pid = stale.name.rsplit('-', 1)[-1]
        if pid.isdigit() and not Path(f'/proc/{pid}').exists():
            shutil.rmtree(stale, ignore_errors=True)


def check_tools() -> None:
    for tool, why in (('apt-get', 'downloads the Debian packages'), ('dpkg-deb', 'unpacks them'),
                      ('readelf', 'checks what the libraries link to (binutils)'), ('git', 'lists the source files')):
        if not shutil.which(tool):
            fail(f'{tool} not found ({why}): run this on a Debian/Ubuntu machine with binutils and git')


def download_python(dest: Path, scratch: Path) -> list[dict]:
    """Sdists and pure wheels, at the versions this environment has (wheel: the newest)."""
    dest.mkdir(parents=True)
    def pinned(name):
        try:
            return f'{name}=={importlib.metadata.version(name)}'
        except importlib.metadata.PackageNotFoundError:
            return name
    pip = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '-q', '-d', str(scratch)]
    for what, names in (('--no-binary', SDISTS), ('--only-binary', WHEELS)):
        proc = subprocess.run(pip + [what, ':all:' if what == '--only-binary' else ','.join(names), *map(pinned, names)],
                              capture_output=True, text=True)
        if proc.returncode:
            fail(f'pip could not download {", ".join(names)} from the package index: '
                 f'{last_line(proc.stderr)}')
    items = []
    for path in sorted(scratch.iterdir()):
        name = re.split(r'-\d', path.name, maxsplit=1)[0].replace('_', '-').lower()
        kind = 'wheel' if path.suffix == '.whl' else 'sdist'
        if kind == 'wheel' and not re.search(r'-(py3|py2\.py3)-none-any\.whl$', path.name):
            fail(f'{path.name} is not a pure-Python wheel; the bundle must not hold compiled code')
        project = next(n for n in SDISTS + WHEELS if n.lower() == name)
        shutil.copy(path, dest / path.name)
        items.append({'file': path.name, 'project': project, 'kind': kind, 'build_tool': project in BUILD_TOOLS,
                      'if_missing': IF_MISSING.get(project)})
    return items


def download_debs(dest: Path) -> list[dict]:
    dest.mkdir()
    dest.chmod(0o777)  # apt fetches as its sandbox user `_apt`, which must be able to write here
    packages = HEADER_PACKAGES + LIBRARY_PACKAGES
    proc = subprocess.run(['apt-get', 'download', *packages], cwd=dest, capture_output=True, text=True)
    if proc.returncode:
        missing = re.findall(r"Unable to locate package (\S+)|Can't select candidate version from package (\S+)", proc.stderr)
        names = ', '.join(a or b for a, b in missing) or last_line(proc.stderr)
        fail(f'apt cannot download {names}: the names are Debian 12\'s; on Debian 12 run `sudo apt-get update` and retry')
    debs = []
    for path in sorted(dest.glob('*.deb')):
        fields = dict(line.split(': ', 1) for line in subprocess.run(
            ['dpkg-deb', '-f', str(path), 'Package', 'Version'], capture_output=True, text=True,
            check=True).stdout.splitlines())
        debs.append({'name': fields['Package'], 'version': fields['Version'], 'path': path})
    return debs


def unpack_prefix(debs: list[dict], prefix: Path) -> dict:
    """Unpack, keep what a build and a run need, make the .pc files relocatable; return what the
    kept libraries need of the node's glibc and libstdc++."""
    for deb in debs:
        subprocess.run(['dpkg-deb', '-x', str(deb['path']), str(prefix)], check=True)
    usr = prefix / 'usr'
    libdir = next((usr / 'lib').glob('*-linux-gnu'))
    for path in [*usr.glob('share/doc/*/*'), *(usr / 'share').glob('man'), *(usr / 'share').glob('bug'),
                 *(usr / 'share').glob('lintian'), *libdir.glob('cmake'), *libdir.rglob('*.a'),
                 *(usr / 'bin').glob('opencv_*')]:
        if path.name != 'copyright':
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    # BLAS and LAPACK live in subfolders behind update-alternatives links, which only dpkg's
    # scripts would have made: link them where the loader looks.
    for sub in ('blas', 'lapack'):
        for lib in (libdir / sub).glob('lib*.so.3'):
            (libdir / lib.name).symlink_to(f'{sub}/{lib.name}')
    for pc in libdir.glob('pkgconfig/*.pc'):
        pc.write_text(relocatable_pc(pc.read_text(), opencv=pc.name == 'opencv4.pc'))
    roots = [libdir / name for name in ROOTS] + [usr / 'bin' / 'pkgconf']
    kept = closure(roots, libdir)
    for path in sorted(libdir.rglob('*.so*')):  # libraries nothing loads
        if path.is_file() and not path.is_symlink() and path.resolve() not in kept:
            path.unlink()
    # links left dangling: libopencv_calib3d.so (only its headers came), share/doc links
    for path in list(prefix.rglob('*')):
        if path.is_symlink() and not path.exists():
            path.unlink()
    return {'glibc': max_version(kept, rb'GLIBC_2\.(\d+)', '2.'),
            'glibcxx': max_version(kept, rb'GLIBCXX_3\.4\.(\d+)', '3.4.')}


def relocatable_pc(text: str, opencv: bool) -> str:
    """prefix= relative to the .pc file's own folder (prefix/usr/lib/<triplet>/pkgconfig), so the
    bundle works wherever the node keeps it; every other absolute /usr follows the prefix."""
    lines = []
    for line in text.splitlines():
        if line.startswith('prefix='):
            line = 'prefix=${pcfiledir}/../../..'
        elif re.match(r'^\w+=/usr(/|$)', line):
            key, value = line.split('=', 1)
            line = f'{key}=${{prefix}}{value[len("/usr"):]}'
        elif opencv and line.startswith('Libs:'):
            line = f'Libs: {OPENCV_LIBS}'
        lines.append(line)
    return '\n'.join(lines) + '\n'


def needed(path: Path) -> list[str]:
    out = subprocess.run(['readelf', '-d', str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r'\(NEEDED\)\s+Shared library: \[(.+?)\]', out)


def closure(roots: list[Path], libdir: Path) -> set[Path]:
    """The files the roots load, transitively; fail if any library outside the base system is missing."""
    kept, todo = set(), list(roots)
    while todo:
        path = todo.pop()
        if not path.exists():
            fail(f'{path.name} is missing from the unpacked packages: the package list in {Path(__file__).name} '
                 'does not match this Debian release')
        real = path.resolve()
        if real in kept:
            continue
        kept.add(real)
        for soname in needed(real):
            if soname not in BASE_SONAMES:
                todo.append(libdir / soname)
    return kept


def max_version(paths, pattern: bytes, prefix: str) -> str:
    """The newest symbol version any of the files asks for (GLIBC_2.34 -> '2.34'): the node must have it."""
    found = [int(m) for p in paths for m in re.findall(pattern, p.read_bytes())]
    return f'{prefix}{max(found)}' if found else ''


def prefix_layout(prefix: Path) -> dict:
    libdir = next((prefix / 'usr' / 'lib').glob('*-linux-gnu'))
    triplet = libdir.name
    return {'lib': f'prefix/usr/lib/{triplet}', 'pkgconfig': f'prefix/usr/lib/{triplet}/pkgconfig',
            'include': ['prefix/usr/include', f'prefix/usr/include/{triplet}'], 'pkgconf': 'prefix/usr/bin/pkgconf'}


def archive_source(dest: Path, skip: tuple[Path, ...]) -> dict:
    """The working tree as git sees it (tracked files and untracked ones not ignored): what is being
    tested. Not the bundle itself, wherever --out puts it."""
    def git(*args):
        return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, check=True).stdout
    names = [n for n in git('ls-files', '-z', '--cached', '--others', '--exclude-standard').decode().split('\0')
             if n and (ROOT / n).is_file() and not any((ROOT / n).resolve().is_relative_to(s) for s in skip)]
    with tarfile.open(dest, 'w:gz') as tar:
        for name in names:
            tar.add(ROOT / name, arcname=f'fastimagenet/{name}', recursive=False)
    return {'commit': git('rev-parse', 'HEAD').decode().strip(), 'dirty': bool(git('status', '--porcelain').strip()),
            'files': len(names)}


def os_release() -> str:
    try:
        return next(l.split('=', 1)[1].strip().strip('"') for l in open('/etc/os-release') if l.startswith('PRETTY_NAME='))
    except (OSError, StopIteration):
        return platform.platform()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob('*') if p.is_file() or p.is_symlink())


def last_line(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else 'no output'


if __name__ == '__main__':
    run(main)
