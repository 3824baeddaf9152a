#!/bin/bash
# The public ffcv-imagenet call, unchanged: ./convert/write_imagenet.sh <max_res> <jpeg_share> <quality>
# Reads $IMAGENET_DIR/{train,val}, writes $WRITE_DIR/{train,val}_<max_res>_<share>_<quality>.ffcv
set -e
here=$(dirname "$0")
write_dataset () {
    write_path=$WRITE_DIR/${1}_${2}_${3}_${4}.ffcv
    echo "Writing ImageNet ${1} dataset to ${write_path}"
    python "$here/write_imagenet.py" \
        --cfg.dataset=imagenet \
        --cfg.split=${1} \
        --cfg.data_dir=$IMAGENET_DIR/${1} \
        --cfg.write_path=$write_path \
        --cfg.max_resolution=${2} \
        --cfg.write_mode=proportion \
        --cfg.compress_probability=${3} \
        --cfg.jpeg_quality=$4
}
write_dataset train $1 $2 $3
write_dataset val $1 $2 $3
