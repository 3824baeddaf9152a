"""The GPU check's parts that run anywhere: its answer without CUDA, the node script's refusals
of a bundle it cannot use, and the bundle's relocatable pkg-config files and library closure."""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from fastimagenet.common.cli import UserError

from conftest import ROOT, error_line, script

NODE_SCRIPT = ROOT / 'bench' / 'gpu' / 'build_and_check.py'
LIBDIR = Path('/usr/lib/x86_64-linux-gnu')


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    proc = script('bench/gpu_check.py', env={'CUDA_VISIBLE_DEVICES': ''}, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('no CUDA GPU here (torch '), proc.stdout
    assert 'Traceback' not in proc.stderr


def fake_bundle(tmp_path: Path, **manifest) -> Path:
    """A folder with the node script and a manifest: enough for the checks before any building."""
    bundle = tmp_path / 'bundle'
    (bundle / 'python').mkdir(parents=True)
    shutil.copy(NODE_SCRIPT, bundle / NODE_SCRIPT.name)
    sdist = bundle / 'python' / 'ffcv-1.0.2.tar.gz'
    sdist.write_bytes(b'an sdist')
    (bundle / 'manifest.json').write_text(json.dumps({
        'kind': 'fastimagenet-gpu-bundle', 'machine': platform.machine(), 'built_on': 'Debian GNU/Linux 12',
        'needs': {'glibc': '2.0', 'glibcxx': '3.4.0'},
        'files': {'python/ffcv-1.0.2.tar.gz': hashlib.sha256(b'an sdist').hexdigest()}, **manifest}))
    return bundle


def node(bundle: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return script(bundle / NODE_SCRIPT.name, f'--work={tmp_path / "work"}', '--build-only', check=False, timeout=120)


def test_node_script_refuses_what_it_cannot_build_from_in_one_line(tmp_path):
    bundle = fake_bundle(tmp_path)
    (bundle / 'python' / 'ffcv-1.0.2.tar.gz').write_bytes(b'an sdi')  # cut short on the way to the node
    assert 'ffcv-1.0.2.tar.gz is damaged' in error_line(node(bundle, tmp_path))
    (bundle / 'python' / 'ffcv-1.0.2.tar.gz').unlink()
    assert 'ffcv-1.0.2.tar.gz is missing' in error_line(node(bundle, tmp_path))

    other = fake_bundle(tmp_path / 'arm', machine='aarch64' if platform.machine() != 'aarch64' else 'x86_64')
    assert 'make the bundle on a' in error_line(node(other, tmp_path))
    old = fake_bundle(tmp_path / 'glibc', needs={'glibc': '9.99', 'glibcxx': '3.4.0'})
    assert 'need glibc 9.99 or newer' in error_line(node(old, tmp_path))
    cxx = fake_bundle(tmp_path / 'cxx', needs={'glibc': '2.0', 'glibcxx': '3.4.999'})
    assert 'GLIBCXX_3.4.999' in error_line(node(cxx, tmp_path))

    (bundle / 'manifest.json').unlink()
    assert 'not a bundle' in error_line(node(bundle, tmp_path))
    assert not (tmp_path / 'work').exists()  # refused before building anything


@pytest.mark.skipif(not shutil.which('pkg-config') or not (LIBDIR / 'pkgconfig' / 'opencv4.pc').exists(),
                    reason='needs pkg-config and OpenCV\'s opencv4.pc (make setup installs them)')
def test_bundled_pc_files_point_into_the_prefix_wherever_it_lies(tmp_path):
    from fastimagenet.bench.gpu_bundle import relocatable_pc
    pc_dir = tmp_path / 'moved' / 'prefix' / 'usr' / 'lib' / 'x86_64-linux-gnu' / 'pkgconfig'
    pc_dir.mkdir(parents=True)
    for name in ('opencv4.pc', 'libturbojpeg.pc'):
        text = (LIBDIR / 'pkgconfig' / name).read_text()
        (pc_dir / name).write_text(relocatable_pc(text, opencv=name == 'opencv4.pc'))
    env = {'PKG_CONFIG_LIBDIR': str(pc_dir), 'PKG_CONFIG_PATH': str(pc_dir), 'PATH': '/usr/bin:/bin'}
    usr = tmp_path / 'moved' / 'prefix' / 'usr'

    def flags(*args) -> list[str]:
        return subprocess.run(['pkg-config', *args], env=env, capture_output=True, text=True, check=True).stdout.split()
    cflags = flags('--cflags', 'opencv4')
    assert [Path(f[2:]).resolve() for f in cflags] == [usr / 'include' / 'opencv4']
    libs = flags('--libs', 'opencv4')
    assert libs[1:] == ['-lopencv_imgproc', '-lopencv_core']  # only what ffcv and crop_resize.cpp call
    assert Path(libs[0][2:]).resolve() == usr / 'lib' / 'x86_64-linux-gnu'
    assert [Path(f[2:]).resolve() for f in flags('--cflags', 'libturbojpeg') if f.startswith('-I')] == [usr / 'include']


@pytest.mark.skipif(not (LIBDIR / 'libopencv_imgproc.so.406').exists() or not shutil.which('readelf'),
                    reason='needs Debian 12\'s OpenCV and readelf (make setup installs them)')
def test_library_closure_finds_what_the_libraries_load_and_names_what_is_missing(tmp_path):
    from fastimagenet.bench.gpu_bundle import closure
    kept = {p.name for p in closure([LIBDIR / 'libopencv_imgproc.so.406'], LIBDIR)}
    assert {'libopencv_imgproc.so.4.6.0', 'libopencv_core.so.4.6.0', 'libtbb.so.12.8'} <= kept
    assert not any(name.startswith(('libc.so', 'libstdc++')) for name in kept)  # the node's own

    alone = tmp_path / 'lib'
    alone.mkdir()
    shutil.copy(LIBDIR / 'libopencv_imgproc.so.406', alone)
    with pytest.raises(UserError, match='libopencv_core.so.406 is missing'):
        closure([alone / 'libopencv_imgproc.so.406'], alone)
