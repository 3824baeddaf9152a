"""A web demo of a trained checkpoint: upload an image, see the top-5 classes and a Grad-CAM heat-map.

    pip install -e ".[app]"        # gradio, an optional dependency
    python analysis/app.py --checkpoint runs/demo/best.pt [--port 7860] [--host 127.0.0.1]

then open http://127.0.0.1:7860. Images are classified exactly as predict.py does (same
decoding, crop, resolution and flip averaging: analysis/predictor.py). The app works
offline: no telemetry, no version check, no share link, fonts served locally.
Use --host 0.0.0.0 to reach it from other machines (it has no login: only on a trusted network).
"""
from __future__ import annotations

import argparse
import inspect
import os

from fastimagenet.common.cli import fail, run
from fastimagenet.common.images import BadImage, load_rgb

# Before gradio is imported: it reads them at import and at Blocks() time.
OFFLINE_ENV = {'GRADIO_ANALYTICS_ENABLED': 'False', 'HF_HUB_DISABLE_TELEMETRY': '1', 'HF_HUB_OFFLINE': '1'}


def import_gradio():
    os.environ.update(OFFLINE_ENV)
    try:
        import gradio
    except ImportError as e:
        fail(f'the web app needs gradio ({e}): pip install -e ".[app]"')
    return gradio


def accepted(function, **kwargs) -> dict:
    """The keyword arguments `function` takes: the app runs on gradio 4 to 6, which differ in a few."""
    params = inspect.signature(function).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def build_app(predictor, title: str, topk: int = 5):
    """The gradio Blocks: an image input; the top-k (a Label) and the Grad-CAM overlay as outputs."""
    gr = import_gradio()

    def classify(path: str | None):
        if path is None:  # the image was cleared
            return None, None
        try:
            rgb = load_rgb(path)
        except BadImage as e:
            raise gr.Error(f'not an image this app can read: {e}')
        prediction = predictor(rgb, topk=topk, gradcam=True)
        return {name: prob for _, name, prob in prediction.top}, prediction.heatmap

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f'## {title}\n{predictor.describe()}. Upload an image (JPEG, PNG, WebP).')
        with gr.Row():
            # filepath + image_mode=None: the uploaded file as it is, decoded by load_rgb like predict.py
            # (EXIF rotation, transparency over white) rather than by gradio's own conversion.
            image = gr.Image(type='filepath', image_mode=None, sources=['upload', 'clipboard'],
                             label='image', elem_id='input-image')
            with gr.Column():
                label = gr.Label(num_top_classes=topk, label=f'top-{topk}', elem_id='top-classes')
                heatmap = gr.Image(label='Grad-CAM of the top class (the crop the model sees)',
                                   interactive=False, elem_id='gradcam', **accepted(gr.Image, format='png'))
        # One request at a time: Grad-CAM hooks the one shared model, so two at once would mix.
        image.change(classify, inputs=image, outputs=[label, heatmap], concurrency_limit=1)
    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--checkpoint', required=True, help='best.pt, last.pt or final_weights.pt')
    parser.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    parser.add_argument('--topk', type=int, default=5, help='classes shown (default 5)')
    parser.add_argument('--ema', type=int, choices=(0, 1), default=1, help='1: EMA weights when the checkpoint has them')
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        fail(f'--port must be 1..65535, got {args.port}')
    if args.topk < 1:
        fail('--topk must be at least 1')

    if not os.path.isfile(args.checkpoint):
        fail(f'checkpoint {args.checkpoint} does not exist')
    import_gradio()  # before the model loads: a missing gradio is reported at once
    from fastimagenet.analysis.predictor import Predictor
    predictor = Predictor(args.checkpoint, prefer_ema=bool(args.ema))
    app = build_app(predictor, f'fastimagenet: {args.checkpoint}', args.topk)
    try:
        # share=False: no tunnel (and no download of its client); no server-side rendering (node).
        app.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                   show_error=True, **accepted(app.launch, ssr_mode=False))
    except OSError as e:  # the port is taken
        fail(f'cannot serve on {args.host}:{args.port}: {str(e).splitlines()[0]}')


if __name__ == '__main__':
    run(main)
