"""On an air-gapped CUDA node: build the project from this bundle with no network, then run the GPU check.

    python3 BUNDLE/build_and_check.py [--work DIR] [--rebuild] [--build-only] [-- gpu_check.py options]

The bundle is made on a connected machine by `make gpu-bundle` (bench/gpu_bundle.py). Here,
under the node's own python3 (the one with its CUDA PyTorch):

  1. check the bundle (every file against the manifest's sha256) and the node: architecture,
     glibc and libstdc++ new enough for the bundled libraries, C and C++ compilers, Python.h,
     and the packages the node must bring (torch, numba, cv2...);
  2. build into WORK (default BUNDLE/work): a venv with --system-site-packages, so the node's
     torch and the rest are used; pip, setuptools and wheel from their pure wheels; fastargs and
     ffcv (and PyYAML and psutil where they are missing) from their sdists, terminaltables
     (which fastargs imports) from its pure wheel; the project, `pip install -e`,
     which compiles train/crop_resize.cpp. Everything compiles here, against the headers in
     BUNDLE/prefix, and links with an rpath to its libraries: they are found at run time
     without LD_LIBRARY_PATH, and nothing else in the process sees them;
  3. import the compiled parts and say where their libraries came from; then run
     bench/gpu_check.py from the built source: its last line is the JSON summary.

A second run reuses the build (--rebuild redoes it). Standard library only: nothing is
installed yet when this runs.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

BUNDLE = Path(__file__).resolve().parent
# What the node must have: the bundle brings none of these (torch alone is several GB).
NODE_PACKAGES = {'torch': 'torch', 'torchvision': 'torchvision', 'numpy': 'numpy', 'numba': 'numba',
                 'cv2': 'opencv-python-headless', 'pandas': 'pandas', 'PIL': 'pillow', 'pytest': 'pytest',
                 'tqdm': 'tqdm', 'matplotlib': 'matplotlib'}
PIP = ['--no-index', '--no-deps', '--no-cache-dir', '--disable-pip-version-check']
COMPILED = ('ffcv._libffcv', 'fastimagenet.train._crop_resize')


class NodeError(Exception):
    pass


def fail(message: str):
    raise NodeError(message)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--work', default=str(BUNDLE / 'work'), help='where to build (default: BUNDLE/work)')
    ap.add_argument('--rebuild', action='store_true', help='build again even if WORK holds this build')
    ap.add_argument('--build-only', action='store_true', help='build and import-check, do not run the check')
    args, check_args = ap.parse_known_args()
    check_args = [a for a in check_args if a != '--']
    start = time.time()
    manifest = read_manifest()
    check_node(manifest)
    work = Path(args.work).resolve()
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f'cannot write to {work} ({e.strerror}): pass --work DIR on a writable disk')
    if not os.access(work, os.W_OK):
        fail(f'cannot write to {work}: pass --work DIR on a writable disk')
    stamp, venv_python = work / 'built.json', work / 'venv' / 'bin' / 'python'
    identity = {'manifest': sha256(BUNDLE / 'manifest.json'), 'python': sys.executable, 'version': sys.version}
    reused = not args.rebuild and stamp.exists() and venv_python.exists() and \
        json.loads(stamp.read_text()).get('identity') == identity
    if reused:
        steps = json.loads(stamp.read_text())['steps']
        print(f'reusing the build in {work} (--rebuild to redo it)', flush=True)
    else:
        stamp.unlink(missing_ok=True)
        steps = build(manifest, work)
        stamp.write_text(json.dumps({'identity': identity, 'steps': steps}) + '\n')
    libraries = import_check(venv_python, work / 'src' / 'fastimagenet', manifest)
    setup = {'bundle': manifest['created'], 'source_commit': manifest['source']['commit'],
             'source_dirty': manifest['source']['dirty'], 'python': platform.python_version(),
             'build_s': round(sum(steps.values()), 1), 'build_steps_s': steps, 'reused_build': reused,
             'libraries': libraries, 'setup_s': round(time.time() - start, 1)}
    print(f'built and checked in {setup["setup_s"]:.0f} s', flush=True)
    if args.build_only:
        print(json.dumps(setup))
        return 0
    return subprocess.call([str(venv_python), 'bench/gpu_check.py', '--work', str(work / 'check'),
                            '--setup', json.dumps(setup), *check_args], cwd=work / 'src' / 'fastimagenet',
                           env=clean_env())


def read_manifest() -> dict:
    path = BUNDLE / 'manifest.json'
    if not path.is_file():
        fail(f'{BUNDLE} holds no manifest.json: it is not a bundle made by `make gpu-bundle`')
    manifest = json.loads(path.read_text())
    if manifest.get('kind') != 'fastimagenet-gpu-bundle':
        fail(f'{path} is not the manifest of a GPU bundle')
    for name, digest in manifest['files'].items():
        file = BUNDLE / name
        if not file.is_file() or sha256(file) != digest:
            fail(f'{file} is {"damaged" if file.is_file() else "missing"} (not as `make gpu-bundle` wrote it): '
                 f'copy the whole bundle folder again')
    return manifest


def check_node(manifest: dict) -> None:
    """Everything the build needs from the node, each missing piece in one line, before any work."""
    if platform.machine() != manifest['machine']:
        fail(f'this node is {platform.machine()} but the bundle\'s libraries are {manifest["machine"]}: '
             f'make the bundle on a {platform.machine()} machine')
    if sys.version_info < (3, 11):
        fail(f'python {platform.python_version()} is too old: the project needs 3.11 or newer')
    needs = manifest['needs']
    libc = os.confstr('CS_GNU_LIBC_VERSION') if hasattr(os, 'confstr') else ''
    if not libc.startswith('glibc ') or version(libc.split()[1]) < version(needs['glibc']):
        fail(f'the bundled libraries need glibc {needs["glibc"]} or newer; this node has '
             f'{libc or "no glibc"} (the bundle is made from {manifest["built_on"]})')
    libstdcxx, newest = libstdcxx_version()
    if version(newest) < version(needs['glibcxx']):
        fail(f'the bundled OpenCV needs GLIBCXX_{needs["glibcxx"]} (GCC 12\'s libstdc++ or newer); '
             f'{libstdcxx} has GLIBCXX_{newest}')
    for var, what in (('CC', 'C'), ('CXX', 'C++')):
        command = os.environ.get(var) or sysconfig.get_config_var(var) or ''
        if not command or not shutil.which(command.split()[0]):
            fail(f'no {what} compiler: python builds extensions with `{command or var}`, which is not on PATH '
                 f'(set {var}=... to the node\'s compiler)')
    include = Path(sysconfig.get_paths()['include'])
    if not (include / 'Python.h').exists():
        fail(f'{include}/Python.h is missing: the node needs the headers of python {platform.python_version()} '
             f'(e.g. the python3-dev package, or a module that provides them)')
    missing = [package for module, package in NODE_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        fail(f'{sys.executable} lacks {", ".join(missing)}, which the bundle does not bring: '
             f'run this with the python3 that has the node\'s CUDA PyTorch')


def libstdcxx_version() -> tuple[str, str]:
    """(path, newest GLIBCXX version) of the libstdc++ this process loads."""
    try:
        ctypes.CDLL('libstdc++.so.6')
    except OSError:
        fail('no libstdc++.so.6 on this node: install the C++ compiler\'s runtime')
    path = next((line.split()[-1] for line in open('/proc/self/maps') if 'libstdc++.so' in line), None)
    if path is None:
        return 'libstdc++.so.6', '0'
    found = [int(m) for m in re.findall(rb'GLIBCXX_3\.4\.(\d+)', Path(path).read_bytes())]
    return path, f'3.4.{max(found, default=0)}'


def build(manifest: dict, work: Path) -> dict:
    """Each step's seconds. Every command's output goes to WORK/build.log; a failure prints its tail."""
    for old in ('venv', 'src', 'bin'):
        shutil.rmtree(work / old, ignore_errors=True)
    log = work / 'build.log'
    log.write_text('')
    env = build_env(manifest, work)
    python = work / 'venv' / 'bin' / 'python'
    files = {item['project']: BUNDLE / 'python' / item['file'] for item in manifest['python']}
    steps = {}

    def step(name, command):
        t = time.time()
        print(f'building: {name}', flush=True)
        with open(log, 'a') as out:
            out.write(f'$ {" ".join(map(str, command))}\n')
            out.flush()
            proc = subprocess.run(list(map(str, command)), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
        if proc.returncode:
            tail = log.read_text().splitlines()[-25:]
            print('\n'.join(tail), file=sys.stderr)
            fail(f'{name} failed (exit {proc.returncode}); the whole output is in {log}')
        steps[name] = round(time.time() - t, 1)

    step('venv', [sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip', work / 'venv'])
    see_this_environment(python)
    # pip runs from its own wheel to install itself: no ensurepip, no system pip needed
    step('pip, setuptools, wheel', [python, files['pip'] / 'pip', 'install', *PIP,
                                    files['pip'], files['setuptools'], files['wheel']])
    install = [python, '-m', 'pip', 'install', '-v', *PIP, '--no-build-isolation']  # -v: compiler lines in the log
    wanted = [item for item in manifest['python'] if not item['build_tool'] and not (
        item['if_missing'] and subprocess.run([python, '-c', f'import {item["if_missing"]}'], capture_output=True,
                                              env=env).returncode == 0)]
    step(', '.join(item['project'] for item in wanted), install + [files[item['project']] for item in wanted])
    t = time.time()
    with tarfile.open(BUNDLE / 'fastimagenet.tar.gz') as tar:
        if hasattr(tarfile, 'data_filter'):
            tar.extractall(work / 'src', filter='data')
        else:
            tar.extractall(work / 'src')
    steps['source'] = round(time.time() - t, 1)
    step('fastimagenet (compiles train/crop_resize.cpp)', install + ['-e', work / 'src' / 'fastimagenet'])
    return steps


def see_this_environment(venv_python: Path) -> None:
    """Run from a venv (the node's torch installed in one), --system-site-packages would show the
    new venv the interpreter's base packages, not this venv's: point it at them too, after its own."""
    if sys.prefix == sys.base_prefix:
        return
    purelib = subprocess.run([str(venv_python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, '_node_packages.pth').write_text(''.join(f'{d}\n' for d in site.getsitepackages()))


def build_env(manifest: dict, work: Path) -> dict:
    """Compile against the bundle's prefix, link with an rpath to it, never reach for a network."""
    layout = manifest['prefix']
    lib, pc = BUNDLE / layout['lib'], BUNDLE / layout['pkgconfig']
    env = clean_env()

    def prepend(var, *paths):
        env[var] = os.pathsep.join([*map(str, paths), *filter(None, [os.environ.get(var)])])
    # Only the bundle's .pc files: a node's own OpenCV (if any) must not mix with the bundle's headers.
    env['PKG_CONFIG_LIBDIR'] = env['PKG_CONFIG_PATH'] = str(pc)
    prepend('CPATH', *(BUNDLE / d for d in layout['include']))  # jpeglib.h: train/crop_resize.cpp names no -I
    # -L ahead of the system's folders (LIBRARY_PATH would come after them: a node's own libjpeg.so
    # would win); DT_RPATH, not RUNPATH, as it also serves the libraries' own dependencies (libtbb...)
    env['LDFLAGS'] = f'{os.environ.get("LDFLAGS", "")} -L{lib} -Wl,--disable-new-dtags,-rpath,{lib}'.strip()
    env['PIP_NO_INDEX'] = '1'
    if not shutil.which('pkg-config'):  # ffcv's setup.py and ours call pkg-config: lend them the bundle's
        shim = work / 'bin' / 'pkg-config'
        shim.parent.mkdir(exist_ok=True)
        shim.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH="{lib}" exec "{BUNDLE / layout["pkgconf"]}" "$@"\n')
        shim.chmod(0o755)
        prepend('PATH', shim.parent)
    return env


def clean_env() -> dict:
    """The caller's environment without what would point pip at an index or the loader at other libraries."""
    return {k: v for k, v in os.environ.items()
            if k not in ('LD_LIBRARY_PATH', 'PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_FIND_LINKS', 'PYTHONPATH')}


def import_check(python: Path, src: Path, manifest: dict) -> dict:
    """Load the compiled parts in a fresh process (no LD_LIBRARY_PATH) and report which files the
    loader picked for the bundled libraries: the bundle's, by the rpath."""
    code = ('import importlib, json, os\n'
            f'for name in {COMPILED!r}: importlib.import_module(name)\n'
            'names = ("libopencv_core.so", "libopencv_imgproc.so", "libjpeg.so", "libturbojpeg.so", "libtbb.so")\n'
            'paths = {l.split()[-1] for l in open("/proc/self/maps") if l.split()[-1].startswith("/")}\n'
            'print(json.dumps(sorted(p for p in paths if os.path.basename(p).startswith(names))))\n')
    proc = subprocess.run([str(python), '-c', code], capture_output=True, text=True, cwd=src, env=clean_env())
    if proc.returncode:
        error = [l for l in proc.stderr.splitlines() if l.strip()][-1:] or ['no output']
        fail(f'the built extensions do not load: {error[0]}')
    loaded = json.loads(proc.stdout.splitlines()[-1])
    prefix = str(BUNDLE / 'prefix')
    outside = [p for p in loaded if not os.path.realpath(p).startswith(prefix)]
    for path in loaded:
        print(f'  loads {path}')
    if outside:
        print(f'warning: {", ".join(outside)} came from outside the bundle', flush=True)
    return {'from_bundle': len(loaded) - len(outside), 'outside': outside}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r'\d+', text))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == '__main__':
    try:
        sys.exit(main())
    except NodeError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
