"""A web demo of a trained checkpoint: upload an image, see the top-5 classes and a Grad-CAM heat-map.

    pip install -e ".[app]"        # gradio, an optional dependency
    python analysis/app.py --checkpoint runs/demo/best.pt [--port 7860] [--host 127.0.0.1]

then open http://127.0.0.1:7860. Images are classified exactly as predict.py does (same
decoding, crop, resolution and flip averaging: analysis/predictor.py). The app works
offline: no telemetry, no version check, no share link, fonts served locally.

To reach it from other machines (--host 0.0.0.0) it needs a login, never on the command line:
--auth-file PATH (lines user:password, chmod 600) or FASTIMAGENET_APP_AUTH=user:password;
--no-login serves it open to anyone who reaches the port. Uploads are limited to
--max-file-size MB and --max-megapixels (a small file can declare billions of pixels).
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import hashlib
import hmac
import inspect
import ipaddress
import os
import sys
import warnings

from fastimagenet.common.cli import fail, run
from fastimagenet.common.images import MAX_PIXELS, BadImage, load_rgb

# Before gradio is imported: it reads them at import and at Blocks() time.
OFFLINE_ENV = {'GRADIO_ANALYTICS_ENABLED': 'False', 'HF_HUB_DISABLE_TELEMETRY': '1', 'HF_HUB_OFFLINE': '1'}
AUTH_ENV = 'FASTIMAGENET_APP_AUTH'  # user:password, for one account without a file
MB = 1024 * 1024  # gradio's megabyte


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


# ---- the login ----------------------------------------------------------------------------------

def parse_account(text: str, where: str) -> tuple[str, str]:
    """'user:password' -> (user, password). Errors name `where`, never the text: it holds a password."""
    user, sep, password = text.partition(':')
    user = user.strip()  # as gradio strips the name typed in its login form
    if not (sep and user and password):
        fail(f'{where} must be user:password (a name without ":", then a non-empty password)')
    return user, password


def read_accounts(auth_file: str | None) -> dict[str, str]:
    """{user: password} from --auth-file's lines (blank and # lines skipped) and from AUTH_ENV."""
    accounts = {}

    def add(text, where):
        user, password = parse_account(text, where)
        if user in accounts:
            fail(f'{where}: user {user!r} is given twice')
        accounts[user] = password

    if auth_file is not None:
        try:
            st = os.stat(auth_file)
            with open(auth_file, encoding='utf-8') as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            fail(f'cannot read --auth-file {auth_file}: {getattr(e, "strerror", None) or e}')
        if st.st_mode & 0o066:
            print(f'warning: other users can read or change {auth_file} (mode {st.st_mode & 0o777:o}): '
                  f'chmod 600 {auth_file}', file=sys.stderr)
        for n, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith('#'):
                add(line.strip(), f'--auth-file {auth_file} line {n}')
        if not accounts:
            fail(f'--auth-file {auth_file} has no user:password line')
    if os.environ.get(AUTH_ENV):
        add(os.environ[AUTH_ENV], AUTH_ENV)
    return accounts


def password_check(accounts: dict[str, str]):
    """gradio's auth callable. Digests of 'user:password' compared in constant time (hmac), against
    every account: the time taken tells neither which part was wrong nor how long the secret is."""
    def digest(user, password):
        return hashlib.sha256(f'{user}:{password}'.encode()).digest()
    known = [digest(u, p) for u, p in accounts.items()]

    def check(user: str, password: str) -> bool:
        given = digest(user.strip(), password)
        return any([hmac.compare_digest(given, d) for d in known])  # a list: no early exit
    return check


def is_loopback(host: str) -> bool:
    """Only this machine can connect. A host name other than localhost may resolve to any interface."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---- the page -----------------------------------------------------------------------------------

def build_app(predictor, title: str, topk: int = 5, max_file_size: int | None = None,
              max_pixels: int = MAX_PIXELS):
    """The gradio Blocks: an image input; the top-k (a Label) and the Grad-CAM overlay as outputs."""
    gr = import_gradio()

    def classify(path: str | None):
        if path is None:  # the image was cleared
            return None, None
        try:
            size = os.path.getsize(path)
            # gradio refuses larger uploads where launch() takes max_file_size; this, in the others.
            if max_file_size is not None and size > max_file_size:
                raise BadImage(f'{size / MB:.1f} MB, over the limit of {max_file_size / MB:g} MB')
            rgb = load_rgb(path, max_pixels=max_pixels)
        except BadImage as e:
            # One line in the log, not gradio's traceback: a user's bad file is not the app's fault.
            print(f'refused an upload: {e}', flush=True)
            raise gr.Error(f'not an image this app can read: {e}', **accepted(gr.Error, print_exception=False))
        prediction = predictor(rgb, topk=topk, gradcam=True)
        return {name: prob for _, name, prob in prediction.top}, prediction.heatmap

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f'## {title}\n{predictor.describe()}. Upload an image (JPEG, PNG, WebP).')
        with gr.Row():
            image = gr.Image(type='filepath', image_mode=None, sources=['upload', 'clipboard'],
                             label='image', elem_id='input-image')
            # The uploaded file as it is (gradio has checked it is an upload), decoded only by load_rgb
            # like predict.py: EXIF rotation, transparency over white, the pixel limit. gradio's own
            # preprocessing opens it with Pillow first (gradio 4 re-encodes it), where a decompression
            # bomb or a non-image fails with a generic error and a traceback. Not preprocess=False:
            # gradio 4 then passes on the path the browser sent, unchecked. Not a subclass: gradio
            # writes a .pyi stub next to the file of every component class.
            image.preprocess = lambda payload: None if payload is None else payload.path
            with gr.Column():
                label = gr.Label(num_top_classes=topk, label=f'top-{topk}', elem_id='top-classes')
                heatmap = gr.Image(label='Grad-CAM of the top class (the crop the model sees)',
                                   interactive=False, elem_id='gradcam', **accepted(gr.Image, format='png'))
        # One request at a time: Grad-CAM hooks the one shared model, so two at once would mix.
        image.change(classify, inputs=image, outputs=[label, heatmap], concurrency_limit=1)
    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--checkpoint', required=True, help='best.pt, last.pt or final_weights.pt')
    parser.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    parser.add_argument('--topk', type=int, default=5, help='classes shown (default 5)')
    parser.add_argument('--ema', type=int, choices=(0, 1), default=1, help='1: EMA weights when the checkpoint has them')
    parser.add_argument('--auth-file', metavar='PATH',
                        help=f'ask for a login: accounts as user:password lines (also: {AUTH_ENV}=user:password)')
    parser.add_argument('--no-login', action='store_true',
                        help='serve a non-loopback --host without a login: anyone who reaches the port can use it')
    parser.add_argument('--max-file-size', type=float, default=20, metavar='MB', help='largest upload (default 20)')
    parser.add_argument('--max-megapixels', type=float, default=50, metavar='MP',
                        help=f'largest image decoded (default 50, at most {MAX_PIXELS // 10**6})')
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        fail(f'--port must be 1..65535, got {args.port}')
    if args.topk < 1:
        fail('--topk must be at least 1')
    if not args.max_file_size > 0:
        fail(f'--max-file-size must be positive, got {args.max_file_size:g}')
    max_pixels = int(args.max_megapixels * 10**6)
    if not 0 < max_pixels <= MAX_PIXELS:
        fail(f'--max-megapixels must be in (0, {MAX_PIXELS / 10**6:g}] (Pillow refuses more), got {args.max_megapixels:g}')

    accounts = read_accounts(args.auth_file)
    os.environ.pop(AUTH_ENV, None)  # read: nothing the app starts inherits it
    if accounts and args.no_login:
        fail(f'--no-login, yet a login is given ({"--auth-file" if args.auth_file else AUTH_ENV}): drop one of them')
    if not accounts and not args.no_login and not is_loopback(args.host):
        fail(f'--host {args.host} lets other machines reach the app, so it needs a login: --auth-file PATH '
             f'(lines user:password, chmod 600) or {AUTH_ENV}=user:password; or --no-login to serve it to anyone')
    if not os.path.isfile(args.checkpoint):
        fail(f'checkpoint {args.checkpoint} does not exist')
    import_gradio()  # before the model loads: a missing gradio is reported at once
    from PIL import Image
    # load_rgb refuses from max_pixels, below Pillow's warning point by default: the warning would
    # only add noise to the log.
    warnings.filterwarnings('ignore', category=Image.DecompressionBombWarning)
    from fastimagenet.analysis.predictor import Predictor
    predictor = Predictor(args.checkpoint, prefer_ema=bool(args.ema))
    max_file_size = int(args.max_file_size * MB)
    app = build_app(predictor, f'fastimagenet: {args.checkpoint}', args.topk, max_file_size, max_pixels)
    if accounts:
        print(f'login required: {len(accounts)} account(s)', flush=True)
    try:
        # share=False: no tunnel (and no download of its client); no server-side rendering (node);
        # no run history (its routes call the Hugging Face hub, without a login).
        app.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                   show_error=True, auth=password_check(accounts) if accounts else None,
                   auth_message='fastimagenet demo: log in' if accounts else None,
                   **accepted(app.launch, ssr_mode=False, max_file_size=max_file_size, run_history=False))
    except OSError as e:  # the port is taken
        fail(f'cannot serve on {args.host}:{args.port}: {str(e).splitlines()[0]}')


if __name__ == '__main__':
    run(main)
