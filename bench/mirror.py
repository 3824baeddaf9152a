"""What mirroring a run folder costs: the trainer's wait in push() and the upload behind it.

    python bench/mirror.py [--checkpoint-mb 300] [--epochs 4]

A run folder like a ResNet-50D run's (params.json, log.jsonl, last.pt and best.pt of
--checkpoint-mb each: model, EMA and momentum of 25.6M parameters are ~300 MB) is mirrored
after each of --epochs simulated epochs, as the trainer does: last.pt rewritten (new content,
renamed into place), best.pt rewritten with the same content every other epoch (a new best: the
mirror stores a content once, so it costs no second upload), a log line appended, then
Mirror.push().
Two stores: moto's S3 API server on loopback (a real S3 protocol, s3fs, multipart uploads;
no network, so this is the client's cost, not a bucket's bandwidth) and a file:// folder.
Per epoch: how long push() kept the caller (the training loop) and how long the background
upload took until the snapshot was complete. The last line printed is one JSON object.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import json
import logging
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run(url: str, folder: Path, checkpoint_mb: int, epochs: int, endpoint: str | None) -> list[dict]:
    from fastimagenet.train.mirror import Mirror
    folder.mkdir(parents=True)
    (folder / 'params.json').write_text(json.dumps({'model.arch': 'resnet50d'}))
    mirror = Mirror(url, endpoint_url=endpoint)
    mirror.check()
    rows = []
    for epoch in range(1, epochs + 1):
        blob = os.urandom(checkpoint_mb << 20)  # a new checkpoint: nothing in it was uploaded before
        write_atomic(folder / 'last.pt', blob)
        if epoch % 2 == 1:
            write_atomic(folder / 'best.pt', blob)
        with open(folder / 'log.jsonl', 'a') as f:
            f.write(json.dumps({'epoch': epoch - 1}) + '\n')
        t = time.perf_counter()
        mirror.push(folder, epoch)
        push_ms = (time.perf_counter() - t) * 1e3
        mirror.wait()
        rows.append({'epoch': epoch, 'push_ms': round(push_ms, 2), 'upload_s': round(time.perf_counter() - t, 2),
                     'uploaded_mb': checkpoint_mb})  # last.pt's new content; best.pt's is the same
    mirror.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--checkpoint-mb', type=int, default=300)
    ap.add_argument('--epochs', type=int, default=4)
    args = ap.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer
    logging.getLogger('werkzeug').setLevel(logging.ERROR)  # else one line per request
    os.environ.update(AWS_ACCESS_KEY_ID='bench', AWS_SECRET_ACCESS_KEY='bench-secret', AWS_DEFAULT_REGION='us-east-1')
    port = free_port()
    server = ThreadedMotoServer(ip_address='127.0.0.1', port=port, verbose=False)
    server.start()
    endpoint = f'http://127.0.0.1:{port}'
    boto3.client('s3', endpoint_url=endpoint).create_bucket(Bucket='bench')
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix='mirror-bench-') as tmp:
            tmp = Path(tmp)
            results['s3_moto'] = run('s3://bench/run', tmp / 's3run', args.checkpoint_mb, args.epochs, endpoint)
            results['file'] = run(f'file://{tmp / "store"}', tmp / 'filerun', args.checkpoint_mb, args.epochs, None)
    finally:
        server.stop()

    print(f'{"store":<9} {"epoch":>5} {"uploaded MB":>12} {"push() ms":>10} {"upload s":>9} {"MB/s":>7}')
    for store, rows in results.items():
        for r in rows:
            print(f'{store:<9} {r["epoch"]:>5} {r["uploaded_mb"]:>12} {r["push_ms"]:>10.2f} {r["upload_s"]:>9.2f} '
                  f'{r["uploaded_mb"] / r["upload_s"]:>7.0f}')
    summary = {store: {'push_ms_median': round(statistics.median(r['push_ms'] for r in rows), 2),
                       'push_ms_max': max(r['push_ms'] for r in rows),
                       'upload_mb_per_s_median': round(statistics.median(r['uploaded_mb'] / r['upload_s']
                                                                         for r in rows), 1)}
               for store, rows in results.items()}
    print(json.dumps({'checkpoint_mb': args.checkpoint_mb, 'epochs': args.epochs, 'summary': summary,
                      'results': results}))


if __name__ == '__main__':
    main()
