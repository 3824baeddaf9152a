#!/usr/bin/env bash
# Play the air-gapped GPU node on a connected Debian machine, as root, to prove the offline path
# as far as a machine without a GPU can:
#   - a network namespace with no network (unshare --net) and a mount namespace in which the
#     system's libjpeg, libturbojpeg and OpenCV (headers, libraries, .pc files), its copy of every
#     other library the bundle brings, pkg-config, pip's cache and local package mirrors are hidden
#     (an empty folder or file bound over each);
#   - NODE_PYTHON stands in for the node's python3, with the node's packages installed in it;
#   - BUNDLE/build_and_check.py builds and runs the check (which, with no GPU, says so); then the
#     built extensions' RPATH and NEEDED entries, and a CPU smoke run with the built environment:
#     the CUDA tests' collection (they skip), the GPU check's own tests, two decoder tests that
#     call the compiled helper and ffcv, the trainer's kill -9 and resume test (faults, psutil),
#     and two epochs of the trainer.
#
#   sudo bench/gpu/simulate_offline.sh BUNDLE NODE_PYTHON [WORK]
set -euo pipefail
if [ "${1:-}" != --inside ]; then
  [ "$(id -u)" = 0 ] || { echo "error: run as root (unshare and mount need it)" >&2; exit 2; }
  [ $# -ge 2 ] || { echo "usage: $0 BUNDLE NODE_PYTHON [WORK]" >&2; exit 2; }
  exec unshare --net --mount --propagation private bash "$0" --inside "$(realpath "$1")" "$2" "${3:-/tmp/gpu-offline-work}"
fi
bundle=$2 node_python=$3 work=$4
lib=/usr/lib/x86_64-linux-gnu
empty_dir=$(mktemp -d) empty_file=$(mktemp)
hide() {
  for path in "$@"; do
    if [ -d "$path" ]; then mount --bind "$empty_dir" "$path"
    elif [ -e "$path" ]; then mount --bind "$empty_file" "$(realpath "$path")"; fi
  done
}
hide /usr/include/opencv4 /usr/include/jpeglib.h /usr/include/jerror.h /usr/include/jmorecfg.h \
     /usr/include/turbojpeg.h /usr/include/x86_64-linux-gnu/jconfig.h \
     $lib/pkgconfig/opencv4.pc $lib/pkgconfig/libjpeg.pc $lib/pkgconfig/libturbojpeg.pc \
     $(find $lib -maxdepth 1 -type f \( -name 'libopencv_*' -o -name 'libjpeg.so*' -o -name 'libturbojpeg.so*' \))
for so in $(find "$bundle/prefix/usr/lib" -name '*.so*' -printf '%f\n' | sort -u); do
  hide "$lib/$so"  # wherever update-alternatives points it
done
hide /usr/bin/pkg-config /usr/bin/pkgconf /usr/bin/x86_64-linux-gnu-pkg-config /opt/wheels /opt/pypi /opt/pypi-more \
     /root/.cache/pip

echo "== the simulated node"
"$node_python" - <<'EOF'
import socket
try:
    socket.create_connection(('pypi.org', 443), timeout=5)
    print('network: reachable (the simulation is broken)')
except OSError as e:
    print(f'network: none ({e})')
EOF
echo "python: $("$node_python" --version);" \
     "pkg-config: $("$node_python" -c 'import shutil; print(shutil.which("pkg-config"))');" \
     "/usr/include/opencv4: $(ls /usr/include/opencv4 | wc -l) entries;" \
     "libopencv_core.so.406: $(stat -L -c %s $lib/libopencv_core.so.406 2>/dev/null || echo absent) bytes"

echo "== build and check from $bundle"
start=$(date +%s)
"$node_python" "$bundle/build_and_check.py" --work "$work" --rebuild
echo "build_and_check.py: $(( $(date +%s) - start )) s"

echo "== what the built extensions link to"
for so in "$work"/venv/lib/python*/site-packages/ffcv/_libffcv*.so "$work"/src/fastimagenet/train/_crop_resize*.so; do
  echo "$so"; readelf -d "$so" | grep -E 'RPATH|RUNPATH|NEEDED' | sed 's/^ */  /'
done

echo "== CPU smoke test with the built environment"
py=$work/venv/bin/python smoke=$work/smoke
cd "$work/src/fastimagenet"
"$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    "tests/test_gpu_check.py::test_without_cuda_it_says_so_in_one_line_and_exits_0" \
    "tests/test_gpu_check.py::test_node_script_refuses_what_it_cannot_build_from_in_one_line" \
    "tests/test_decoders.py::test_an_undecodable_jpeg_leaves_zeros_not_a_crash" \
    "tests/test_decoders.py::test_cut_jpeg_decodes_as_the_whole_one" \
    "tests/test_train.py::test_resume_after_kill_ends_like_an_uninterrupted_run"
rm -rf "$smoke"
"$py" convert/make_sample.py --out "$smoke/images" --train-per-class 16 --val-per-class 4 --classes 4
"$py" convert/write_imagenet.py --cfg.data_dir="$smoke/images" --cfg.write_path="$smoke/" --cfg.max_resolution=96 \
    2>/dev/null | grep wrote
"$py" train/train_imagenet.py --model.arch=resnet18d --resolution.min_res=32 --resolution.max_res=32 \
    --validation.resolution=32 --validation.batch_size=16 --training.batch_size=16 --training.epochs=2 --lr.lr_peak_epoch=1 \
    --data.num_workers=2 --data.train_dataset="$smoke/train.beton" --data.val_dataset="$smoke/val.beton" \
    --logging.folder="$smoke/run" --logging.progress_every=600 | tail -2
echo "== the PyYAML fallback (installed only on a node without yaml) builds here too"
rm -rf "$work/pyyaml-check"
"$py" -m pip install -q --no-index --no-deps --no-build-isolation --target "$work/pyyaml-check" "$bundle"/python/pyyaml-*.tar.gz
PYTHONPATH="$work/pyyaml-check" "$py" -c 'import yaml; print("yaml", yaml.__version__, "from", yaml.__file__, "libyaml:", yaml.__with_libyaml__)'

