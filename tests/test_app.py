"""The web demo (analysis/app.py) as a person uses it: in headless Chromium, driven by selenium.

Chromium and its driver come from Debian (`make test` installs them); without them the
browser tests are skipped, saying so. Two servers: one open (--no-login), one behind a login
with accounts from a file and from the environment, shared by the login tests.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, error_line, photo, script
from test_analysis import CLASS_NAMES, tiny_run

from fastimagenet.analysis.app import AUTH_ENV, is_loopback, password_check, read_accounts
from fastimagenet.common.images import BadImage, load_rgb

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
# The network is closed: without the background-networking flags Chromium waits on connections.
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--window-size=1280,900']
needs_browser = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f'needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)')


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




# ---- images: the pixel limit (common/images.py) ------------------------------------------------

def png_declaring(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes of PNG whose header declares width x height 8-bit gray pixels (only the
    first rows are there): all a decompression bomb needs to make a decoder allocate."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b'\0' * (width + 1) * 4)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', rows) + chunk(b'IEND', b''))
    return path


def test_load_rgb_refuses_decompression_bombs_with_a_reason(tmp_path):
    bomb = png_declaring(tmp_path / 'bomb.png', 30000, 30000)
    assert bomb.stat().st_size < 2000
    with pytest.raises(BadImage, match='too many pixels.*decompression bomb'):
        load_rgb(bomb)  # over Pillow's own limit
    with pytest.raises(BadImage, match='too many pixels: 10000x6000 is over the limit of 50,000,000'):
        load_rgb(png_declaring(tmp_path / 'big.png', 10000, 6000), max_pixels=50_000_000)
    with warnings.catch_warnings():  # Pillow only warns from 89 M pixels; where warnings are errors:
        warnings.simplefilter('error', Image.DecompressionBombWarning)
        with pytest.raises(BadImage, match='too many pixels'):
            load_rgb(png_declaring(tmp_path / 'bigger.png', 10000, 10000))

    # A real picture: the same pixels whatever the limit, as long as it is within it.
    picture = tmp_path / 'photo.png'
    photo(3, (160, 120)).save(picture)
    rgb = load_rgb(picture)
    assert rgb.shape == (120, 160, 3)
    assert np.array_equal(load_rgb(picture, max_pixels=160 * 120), rgb)
    with pytest.raises(BadImage, match='160x120 is over the limit of 19,199'):
        load_rgb(picture, max_pixels=160 * 120 - 1)


# ---- the login: its parts and its command line ---------------------------------------------------

def test_accounts_from_the_file_and_the_environment_are_checked(tmp_path, monkeypatch):
    auth = tmp_path / 'auth'
    auth.write_text('# demo accounts\nalice:pa:ss word\n\n carol :c4r0l\n')
    auth.chmod(0o600)
    monkeypatch.setenv(AUTH_ENV, 'bob:hunter2')
    accounts = read_accounts(str(auth))
    assert accounts == {'alice': 'pa:ss word', 'carol': 'c4r0l', 'bob': 'hunter2'}
    check = password_check(accounts)
    assert check('alice', 'pa:ss word') and check('bob', 'hunter2') and check(' carol ', 'c4r0l')
    assert not check('alice', 'hunter2') and not check('bob', 'hunter') and not check('dave', 'hunter2')
    assert not check('alice', '') and not check('', '')
    monkeypatch.delenv(AUTH_ENV)
    assert read_accounts(None) == {}

    assert all(map(is_loopback, ['127.0.0.1', '127.0.0.2', '::1', 'localhost']))
    assert not any(map(is_loopback, ['0.0.0.0', '::', '10.0.0.5', 'example.org', '']))


APP = 'analysis/app.py'


@pytest.mark.parametrize('host', ['0.0.0.0', '::', '192.168.1.20', 'demo.example.org'])
def test_a_non_loopback_host_without_a_login_is_one_line_saying_how_to_add_one(host, tmp_path):
    proc = script(APP, '--checkpoint', tmp_path / 'absent.pt', '--host', host, check=False)
    line = error_line(proc)
    assert f'--host {host}' in line and '--auth-file PATH' in line and AUTH_ENV in line and '--no-login' in line


@pytest.mark.parametrize('host', ['127.0.0.1', 'localhost', '::1'])
def test_a_loopback_host_needs_no_login(host, tmp_path):
    # Past the login check, the next one fails: the checkpoint, before anything is loaded.
    proc = script(APP, '--checkpoint', tmp_path / 'absent.pt', '--host', host, check=False)
    assert 'absent.pt does not exist' in error_line(proc)


SECRET = 'Wr0ng-Horse-Battery'  # stands for a real password: it must never be printed


@pytest.mark.parametrize('case', ['no colon', 'no password', 'twice', 'env no colon', 'no-login too', 'empty'])
def test_a_bad_login_is_one_line_that_never_shows_the_password(case, tmp_path):
    auth = tmp_path / 'auth'
    auth.write_text({'no colon': f'alice{SECRET}\n', 'no password': 'alice:\n', 'twice': f'alice:{SECRET}\n',
                     'env no colon': f'alice:{SECRET}\n', 'no-login too': f'alice:{SECRET}\n',
                     'empty': '# nobody yet\n'}[case])
    auth.chmod(0o600)
    env = {AUTH_ENV: {'twice': f'alice:{SECRET}x', 'env no colon': SECRET}.get(case, '')}
    extra = ['--no-login'] if case == 'no-login too' else []
    proc = script(APP, '--checkpoint', tmp_path / 'absent.pt', '--host', '0.0.0.0', '--auth-file', auth, *extra,
                  env=env, check=False)
    line = error_line(proc)
    assert SECRET not in proc.stderr + proc.stdout
    expected = {'no colon': 'line 1 must be user:password', 'no password': 'line 1 must be user:password',
                'twice': "user 'alice' is given twice", 'env no colon': f'{AUTH_ENV} must be user:password',
                'no-login too': '--no-login, yet a login is given', 'empty': 'has no user:password line'}[case]
    assert expected in line, line


def test_an_auth_file_others_can_read_is_one_warning_line(tmp_path):
    auth = tmp_path / 'auth'
    auth.write_text(f'alice:{SECRET}\n')
    auth.chmod(0o644)
    proc = script(APP, '--checkpoint', tmp_path / 'absent.pt', '--host', '0.0.0.0', '--auth-file', auth, check=False)
    assert 'absent.pt does not exist' in error_line(proc)  # a warning, not a refusal
    warned = [line for line in proc.stderr.splitlines() if line.startswith('warning: ')]
    assert len(warned) == 1 and f'chmod 600 {auth}' in warned[0] and 'mode 644' in warned[0]
    # No flag takes the password itself (nor is one an abbreviation of --auth-file).
    proc = script(APP, '--checkpoint', tmp_path / 'absent.pt', '--auth', f'alice:{SECRET}', check=False)
    assert proc.returncode == 2 and 'unrecognized arguments: --auth' in proc.stderr


# ---- the browser --------------------------------------------------------------------------------

class Server:
    """analysis/app.py in its own session (so the test can end it and all it started), logging to a file."""

    def __init__(self, trained, tmp_path: Path, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}/'
        self.log = tmp_path / 'app.log'
        env = {**os.environ, 'GRADIO_TEMP_DIR': str(tmp_path / 'gradio'), 'GRADIO_ANALYTICS_ENABLED': 'False',
               **(env or {})}
        with open(self.log, 'w') as out:
            self.proc = subprocess.Popen([sys.executable, APP, '--checkpoint', str(trained['run'] / 'best.pt'),
                                          '--port', str(self.port), *args],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        try:
            wait_for_http(self.url, self.proc, self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f'--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}']:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = start_browser(tmp_path)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 90):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(condition)


FILE_INPUT = '#input-image input[type=file]'
ROWS = '#top-classes [data-testid$="-confidence-set"]'


def upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, FILE_INPUT))
    driver.find_element(By.CSS_SELECTOR, FILE_INPUT).send_keys(str(path))


def shown_top(driver, count: int) -> list[tuple[str, str]]:
    """The (name, percentage) rows of the top-k once `count` are shown."""
    from selenium.webdriver.common.by import By
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ROWS)) == count)
    return [(row.find_element(By.CSS_SELECTOR, 'dt').text, row.find_element(By.CSS_SELECTOR, 'dd').text)
            for row in driver.find_elements(By.CSS_SELECTOR, ROWS)]


def sample_upload(trained, tmp_path) -> tuple[Path, list]:
    """A partly transparent PNG of the validation set, and what predict.py computes for it."""
    from fastimagenet.analysis.predictor import Predictor
    image = tmp_path / 'upload.png'
    rgba = Image.open(sorted((trained['root'] / 'images' / 'val' / 's00000003').glob('*.JPEG'))[0]).convert('RGBA')
    rgba.putalpha(200)  # partly transparent: decoded over white, as predict.py would
    rgba.save(image)
    return image, Predictor(trained['run'] / 'best.pt')(load_rgb(image), topk=5).top




@needs_browser
def test_upload_shows_top5_and_gradcam_in_the_browser(trained, tmp_path):
    # Open to any machine, as --no-login says explicitly: it starts and serves without a login.
    from selenium.webdriver.common.by import By
    image, expected = sample_upload(trained, tmp_path)
    server = Server(trained, tmp_path, '--host', '0.0.0.0', '--no-login')
    driver = None
    try:
        driver = start_browser(tmp_path)
        driver.get(server.url)
        upload(driver, image)
        shown = shown_top(driver, len(expected))
        # The page shows what predict.py computes for the same file: names in order, rounded percentages.
        assert [name for name, _ in shown] == [name for _, name, _ in expected]
        assert set(name for name, _ in shown) == set(CLASS_NAMES)
        for (_, percent), (_, _, prob) in zip(shown, expected):
            assert abs(float(percent.rstrip('%')) - 100 * prob) <= 0.51
        assert driver.find_element(By.CSS_SELECTOR, '#top-classes [data-testid="label-output-value"]').text == expected[0][1]

        heatmap = '#gradcam img'
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, heatmap)
             and d.execute_script('return arguments[0].complete && arguments[0].naturalWidth',
                                  d.find_element(By.CSS_SELECTOR, heatmap)) == 256)
        # Everything the page loaded came from the app itself: nothing from the internet.
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(u.startswith(server.url) for u in loaded), [u for u in loaded if not u.startswith(server.url)]

        shot = tmp_path / 'app.png'
        assert driver.save_screenshot(str(shot))
        with Image.open(shot) as im:
            assert im.format == 'PNG' and im.width >= 800 and im.height >= 600
            colours = im.convert('RGB').getcolors(1 << 20) or []
            assert len(colours) > 500, 'a nearly blank page'
            assert np.asarray(im.convert('L')).std() > 10
        assert 'login required' not in server.log.read_text()
        assert not (ROOT / 'analysis' / 'app.pyi').exists()  # gradio writes one for a component subclass
    finally:
        if driver is not None:
            driver.quit()
        server.stop()


# One server behind a login for the tests below: alice's account from a file, bob's from the
# environment; listening on every interface, as on a cloud instance; uploads limited to 1 MB.
ACCOUNTS = {'alice': 'file-S3cret-7f3a', 'bob': 'env-S3cret-91c2'}


@pytest.fixture(scope='module')
def login_server(trained, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('login-app')
    auth = tmp_path / 'auth'
    auth.write_text(f'alice:{ACCOUNTS["alice"]}\n')
    auth.chmod(0o600)
    server = Server(trained, tmp_path, '--host', '0.0.0.0', '--auth-file', str(auth), '--max-file-size', '1',
                    env={AUTH_ENV: f'bob:{ACCOUNTS["bob"]}'})
    yield server
    server.stop()


def log_in(driver, url: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    driver.get(url)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[type=password]'))
    driver.find_element(By.CSS_SELECTOR, 'input[data-testid=textbox]').send_keys(user)
    driver.find_element(By.CSS_SELECTOR, 'input[type=password]').send_keys(password)
    driver.find_element(By.XPATH, '//button[normalize-space()="Login"]').click()


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.TAG_NAME, 'body').text


def status_of(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


@needs_browser
def test_the_login_page_refuses_wrong_credentials(login_server, browser):
    from selenium.webdriver.common.by import By
    browser.get(login_server.url)
    wait(browser, lambda d: 'fastimagenet demo: log in' in page_text(d))
    for user, password in [('alice', ACCOUNTS['bob']), ('bob', 'guess'), ('mallory', ACCOUNTS['alice'])]:
        log_in(browser, login_server.url, user, password)
        wait(browser, lambda d: 'Incorrect Credentials' in page_text(d))
        assert not browser.find_elements(By.CSS_SELECTOR, FILE_INPUT)
    # Not only the page: the app's API answers nothing without a login either.
    api = login_server.url + 'gradio_api/'
    assert status_of(api + 'upload', data=b'') == 401
    assert status_of(login_server.url + 'config') == 401
    assert status_of(api + 'info') == 401
    assert status_of(api + 'run-history/buckets') == 404  # off: gradio has it outside the login


@needs_browser
def test_accounts_from_the_file_and_the_environment_get_in_and_classify(login_server, browser, trained, tmp_path):
    image, expected = sample_upload(trained, tmp_path)
    log_in(browser, login_server.url, 'bob', ACCOUNTS['bob'])  # the environment's account
    upload(browser, image)
    assert [name for name, _ in shown_top(browser, len(expected))] == [name for _, name, _ in expected]

    browser.delete_all_cookies()  # logged out: the login page again
    browser.get(login_server.url)
    wait(browser, lambda d: 'fastimagenet demo: log in' in page_text(d))
    log_in(browser, login_server.url, 'alice', ACCOUNTS['alice'])  # the file's account
    upload(browser, image)
    shown = shown_top(browser, len(expected))
    assert [name for name, _ in shown] == [name for _, name, _ in expected]
    for (_, percent), (_, _, prob) in zip(shown, expected):
        assert abs(float(percent.rstrip('%')) - 100 * prob) <= 0.51


@needs_browser
def test_an_oversized_file_or_a_bomb_is_a_message_in_the_page(login_server, browser, trained, tmp_path):
    from selenium.webdriver.common.by import By
    image, expected = sample_upload(trained, tmp_path)
    oversized = tmp_path / 'oversized.png'
    photo(5, (160, 120)).save(oversized)
    with open(oversized, 'ab') as f:
        f.write(os.urandom(1536 * 1024))  # past --max-file-size 1 (MB)
    text = tmp_path / 'notes.png'
    text.write_text('not a picture\n')
    refusals = [
        (oversized, 'exceed the maximum allowed size'),  # gradio's, before anything is sent
        (png_declaring(tmp_path / 'bomb.png', 30000, 30000), 'not an image this app can read: too many pixels'),
        (png_declaring(tmp_path / 'big.png', 10000, 6000), '10000x6000 is over the limit of 50,000,000'),
        (text, 'not an image this app can read: UnidentifiedImageError'),
    ]
    log_in(browser, login_server.url, 'alice', ACCOUNTS['alice'])
    for path, message in refusals:
        upload(browser, path)
        wait(browser, lambda d: any(message in t.text for t in d.find_elements(By.CSS_SELECTOR, '[data-testid=toast-body]')))
    assert not browser.find_elements(By.CSS_SELECTOR, ROWS)
    # Still serving: the next image is classified.
    upload(browser, image)
    assert [name for name, _ in shown_top(browser, len(expected))] == [name for _, name, _ in expected]
    assert login_server.proc.poll() is None
    log = login_server.log.read_text()
    assert log.count('refused an upload: too many pixels') >= 2 and 'Traceback' not in log


@needs_browser
def test_no_secret_in_the_argv_the_page_or_the_log(login_server, browser):
    from selenium.webdriver.common.by import By
    log_in(browser, login_server.url, 'alice', ACCOUNTS['alice'])
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, FILE_INPUT))
    argv = Path(f'/proc/{login_server.proc.pid}/cmdline').read_bytes().decode()
    assert '--auth-file' in argv  # the file's name, not what it holds
    seen = {'argv': argv, 'page': browser.page_source, 'log': login_server.log.read_text()}
    for where, text in seen.items():
        for password in ACCOUNTS.values():
            assert password not in text, f'a password in the {where}'
    assert 'login required: 2 account(s)' in seen['log']
