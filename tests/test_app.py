"""The web demo (analysis/app.py) as a person uses it: in headless Chromium, driven by selenium.

Chromium and its driver come from Debian (`make test` installs them); without them the
browser test is skipped, saying so.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, error_line, script
from test_analysis import CLASS_NAMES, tiny_run

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
# The network is closed: without the background-networking flags Chromium waits on connections.
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--window-size=1280,900']


@pytest.fixture(scope='session')
def trained(tmp_path_factory) -> dict[str, Path]:
    return tiny_run(tmp_path_factory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f'the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f'the app did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}')


def test_missing_gradio_is_one_line_saying_what_to_install(trained):
    # `sys.modules['gradio'] = None` makes `import gradio` fail as if it were not installed.
    code = ("import runpy, sys; sys.modules['gradio'] = None; "
            "sys.argv = ['analysis/app.py', '--checkpoint', sys.argv[1]]; "
            "runpy.run_path('analysis/app.py', run_name='__main__')")
    proc = script('-c', code, trained['run'] / 'best.pt', check=False)
    assert 'pip install -e ".[app]"' in error_line(proc)


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason=f'needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)')
def test_upload_shows_top5_and_gradcam_in_the_browser(trained, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fastimagenet.analysis.predictor import Predictor
    from fastimagenet.common.images import load_rgb

    image = tmp_path / 'upload.png'
    rgba = Image.open(sorted((trained['root'] / 'images' / 'val' / 's00000003').glob('*.JPEG'))[0]).convert('RGBA')
    rgba.putalpha(200)  # partly transparent: decoded over white, as predict.py would
    rgba.save(image)
    expected = Predictor(trained['run'] / 'best.pt')(load_rgb(image), topk=5).top

    port = free_port()
    log = tmp_path / 'app.log'
    env = {**os.environ, 'GRADIO_TEMP_DIR': str(tmp_path / 'gradio'), 'GRADIO_ANALYTICS_ENABLED': 'False'}
    with open(log, 'w') as out:
        server = subprocess.Popen([sys.executable, 'analysis/app.py', '--checkpoint', str(trained['run'] / 'best.pt'),
                                   '--port', str(port), '--host', '127.0.0.1'],
                                  cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    driver = None
    try:
        url = f'http://127.0.0.1:{port}/'
        wait_for_http(url, server, log)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*CHROMIUM_FLAGS, f'--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}']:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        driver.get(url)
        wait = WebDriverWait(driver, 90)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#input-image input[type=file]'))
        driver.find_element(By.CSS_SELECTOR, '#input-image input[type=file]').send_keys(str(image))

        rows = '#top-classes [data-testid$="-confidence-set"]'
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == len(expected))
        shown = [(row.find_element(By.CSS_SELECTOR, 'dt').text, row.find_element(By.CSS_SELECTOR, 'dd').text)
                 for row in driver.find_elements(By.CSS_SELECTOR, rows)]
        # The page shows what predict.py computes for the same file: names in order, rounded percentages.
        assert [name for name, _ in shown] == [name for _, name, _ in expected]
        assert set(name for name, _ in shown) == set(CLASS_NAMES)
        for (_, percent), (_, _, prob) in zip(shown, expected):
            assert abs(float(percent.rstrip('%')) - 100 * prob) <= 0.51
        assert driver.find_element(By.CSS_SELECTOR, '#top-classes [data-testid="label-output-value"]').text == expected[0][1]

        heatmap = '#gradcam img'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, heatmap)
                   and d.execute_script('return arguments[0].complete && arguments[0].naturalWidth',
                                        d.find_element(By.CSS_SELECTOR, heatmap)) == 256)
        # Everything the page loaded came from the app itself: nothing from the internet.
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(u.startswith(url) for u in loaded), [u for u in loaded if not u.startswith(url)]

        shot = tmp_path / 'app.png'
        assert driver.save_screenshot(str(shot))
        with Image.open(shot) as im:
            assert im.format == 'PNG' and im.width >= 800 and im.height >= 600
            colours = im.convert('RGB').getcolors(1 << 20) or []
            assert len(colours) > 500, 'a nearly blank page'
            assert np.asarray(im.convert('L')).std() > 10
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
