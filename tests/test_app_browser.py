"""app.py in a real browser: the app runs as a subprocess on 127.0.0.1 (a free port) with tiny random models, and
headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium) uploads a real ICDAR 2015 photo,
clicks the 4 corners of a word, types a new word and clicks Generate; the image the page returns is fetched and
checked: the photo's size, bit-exact outside the edited area, changed inside. Also: a detected line picked from the
dropdown sets the region, mistakes are messages in the page, and the page fetches nothing from outside 127.0.0.1
(tests/browser_network.py: requests over http(s)/ws(s) to a host other than the loopback; the browser's own
`chrome-untrusted://` pages and such are not the network). Runs with Debian 12's Chromium 150 and later ones.

Where the browser or selenium is missing this module is skipped — and fails under CI=true, where the set-up
(`.ci/run`: apt-get install chromium chromium-driver; requirements.txt: selenium) must have provided them.

TEXTSSR_APP_SCREENSHOT=path saves a screenshot of the page after Generate (the README's imgs/app_screenshot.png);
TEXTSSR_APP_CFG_OPTIONS="key=value ..." serves other checkpoints than the tiny random ones (the demo's, for it).
"""
import base64
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from textssr.edit import DILATE_PX, edited_area, parse_polygon_arg, read_photo
from textssr.edit.region import edit_window

from browser_network import outside_requests
from edit_fixtures import CARPARK, GENAXIS, model_options, models, outside_box, photo_path, text_area  # noqa: F401
from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
START_TIMEOUT, STEP_TIMEOUT = 180, 120  # s: the app's start (imports on a busy 2-core machine), one page action
POLL_S = 0.2  # how often a wait looks at the page again
WINDOW = (1400, 1650)  # browser viewport: the whole page fits, for the screenshot
CLICK_TOLERANCE = 4  # px of the photo: one CSS pixel of the scaled-down canvas is ~2.5 photo pixels
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a CI proxy must not see 127.0.0.1


def unavailable(reason: str):
    """Skip where the browser stack is not installed; fail in CI, whose set-up installs it."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run must install it — apt-get install chromium chromium-driver, "
                    "pip install -r requirements.txt)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def webdriver_module():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        unavailable(f"{', '.join(missing)} not found (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        import gradio  # noqa: F401
    except ImportError as exc:
        unavailable(f"{exc.name} not installed (pip install -r requirements.txt)")
    return webdriver



def answers(url: str) -> bool:
    try:
        with NO_PROXY.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def app_url(webdriver_module, models, tmp_path_factory):
    """``python app.py`` on a free port of 127.0.0.1, stopped after the module."""
    folder = tmp_path_factory.mktemp("app")
    override = os.environ.get("TEXTSSR_APP_CFG_OPTIONS")
    options = ["--cfg-options"] + shlex.split(override) + ["device=cpu"] if override else model_options(models)
    port = free_port()
    env = dict(os.environ, GRADIO_TEMP_DIR=str(folder / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
               PYTHONWARNINGS="ignore", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    log = open(folder / "app.log", "w")
    server = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)] + options,
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"app.py did not start (exit status {server.poll()}):\n{(folder / 'app.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(webdriver_module, tmp_path_factory):
    options = webdriver_module.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    driver = webdriver_module.Chrome(options=options,
                                     service=webdriver_module.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(STEP_TIMEOUT)
    yield driver
    driver.quit()


# ------------------------------------------------------------------------------------------- page helpers


def wait(browser, condition, what: str, shown=None):
    """``condition(browser)`` once it is truthy, polled for up to STEP_TIMEOUT s: on a busy machine the page gets
    there late, never at a fixed time. An element not there yet, re-rendered meanwhile (stale) or under the
    loading overlay counts as "not yet". On time-out the test fails naming ``what`` it waited for and, with
    ``shown`` (a function of the browser), what the page showed last."""
    from selenium.common.exceptions import (ElementClickInterceptedException, ElementNotInteractableException,
                                            NoSuchElementException, StaleElementReferenceException)
    not_yet = (NoSuchElementException, StaleElementReferenceException, ElementClickInterceptedException,
               ElementNotInteractableException)
    deadline, problem = time.monotonic() + STEP_TIMEOUT, None
    while True:
        try:
            result = condition(browser)
            if result:
                return result
        except not_yet as exc:
            problem = f"{type(exc).__name__}: {exc.msg.splitlines()[0] if exc.msg else ''}"
        if time.monotonic() > deadline:
            last = ""
            if shown is not None:
                try:
                    last = f"; the page shows {shown(browser)}"
                except not_yet as exc:
                    last = f"; the page could not be read ({type(exc).__name__})"
            pytest.fail(f"waited {STEP_TIMEOUT} s for {what}{last}" + (f"; last problem: {problem}" if problem else ""))
        time.sleep(POLL_S)


def status(browser) -> str:
    from selenium.webdriver.common.by import By
    return browser.find_element(By.ID, "status").text


def shown_status(browser) -> str:
    return f"the status {status(browser)!r}"


def wait_status(browser, words: str) -> str:
    """The status line once it says ``words``."""
    return wait(browser, lambda d: words in status(d) and status(d), f"the status to say {words!r}", shown_status)


def click(browser, elem_id: str) -> None:
    """Click element ``elem_id`` once it is there and clickable (not covered, not re-rendering)."""
    from selenium.webdriver.common.by import By
    wait(browser, lambda d: d.find_element(By.ID, elem_id).click() or True, f"#{elem_id} to take a click",
         shown_status)


def field(browser, elem_id: str):
    from selenium.webdriver.common.by import By
    return browser.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")


def type_into(browser, elem_id: str, text: str) -> None:
    """Set text field ``elem_id`` to ``text`` by typing it (cleared and typed again until the field holds it)."""
    def typed(d) -> bool:
        box = field(d, elem_id)
        if box.get_attribute("value") != text:
            box.clear()
            box.send_keys(text)
        return box.get_attribute("value") == text
    wait(browser, typed, f"#{elem_id} to hold {text!r}",
         lambda d: f"#{elem_id} holding {field(d, elem_id).get_attribute('value')!r}")


def open_with_photo(browser, url: str, photo: str) -> None:
    from selenium.webdriver.common.by import By
    browser.get(url)
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(photo) or True,
         "the upload input to take the photo")
    wait_status(browser, "photo: click")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#canvas img").get_attribute("naturalWidth") not in
         (None, "0"), "the photo loaded on the canvas", shown_status)


def click_photo_pixel(browser, x: float, y: float) -> None:
    """Click the canvas where photo pixel (x, y) is shown (the image is scaled down to fit, centred)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    image = browser.find_element(By.CSS_SELECTOR, "#canvas img")
    width, height, natural_w, natural_h = browser.execute_script(
        "const b = arguments[0].getBoundingClientRect();"
        "return [b.width, b.height, arguments[0].naturalWidth, arguments[0].naturalHeight];", image)
    scale = min(width / natural_w, height / natural_h, 1.0)  # object-fit: scale-down
    dx = (width - natural_w * scale) / 2 + (x + 0.5) * scale - width / 2  # selenium offsets: from the centre
    dy = (height - natural_h * scale) / 2 + (y + 0.5) * scale - height / 2
    ActionChains(browser).move_to_element_with_offset(image, int(round(dx)), int(round(dy))).click().perform()


def fetch_image(src: str) -> np.ndarray:
    """uint8 BGR pixels of an image the page shows (its src: a URL of the app, or a data URI)."""
    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        with NO_PROXY.open(src, timeout=30) as response:
            data = response.read()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"not an image: {src[:100]}"
    return image


def image_sources(browser, elem_id: str) -> list:
    """The ``src`` of every image under element ``elem_id`` that has one (a data URI or a URL of the app)."""
    from selenium.webdriver.common.by import By
    return [src for src in (i.get_attribute("src") for i in browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} img"))
            if src]


def polygons_close(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    return a.shape == b.shape and np.abs(a - b).max() <= tolerance


# ------------------------------------------------------------------------------------------- tests


def test_edit_a_photo_in_the_browser(browser, app_url, photo_path):
    from selenium.webdriver.common.by import By
    open_with_photo(browser, app_url, photo_path)
    target = parse_polygon_arg(GENAXIS)
    for k, (x, y) in enumerate(target, start=1):
        wait(browser, lambda d: click_photo_pixel(d, x, y) or True, f"the photo to take click {k}", shown_status)
        wait_status(browser, f"corner {k} of 4" if k < 4 else "region set")
    chosen = parse_polygon_arg(wait(browser, lambda d: field(d, "polygon").get_attribute("value"),
                                    "the clicked corners in the polygon field"))
    assert polygons_close(chosen, target, CLICK_TOLERANCE), chosen
    type_into(browser, "text", "Hello World")
    click(browser, "generate")
    done = wait_status(browser, "repainted 'Hello World'")
    assert "error" not in done
    sources = wait(browser, lambda d: len(image_sources(d, "before_after")) == 2 and image_sources(d, "before_after"),
                   "both the before and the after image",
                   lambda d: f"{len(image_sources(d, 'before_after'))} image(s) in #before_after")
    before, after = (fetch_image(src) for src in sources)
    photo = read_photo(photo_path)
    assert before.shape == after.shape == photo.shape
    assert (before == photo).all()
    changed = (after != photo).any(axis=2)
    assert not changed[outside_box(photo.shape, chosen, DILATE_PX + 1)].any()
    assert not changed[~edited_area(photo.shape, chosen, edit_window(photo, chosen), DILATE_PX)].any()
    assert changed[text_area(photo.shape, chosen)].mean() > 0.9
    variant = fetch_image(wait(browser, lambda d: image_sources(d, "variants_gallery")[:1], "the gallery's variant")[0])
    assert (variant == after).all()
    for view in ("window", "masked", "glyph", "ttf"):  # the conditioning the model saw is shown
        wait(browser, lambda d: image_sources(d, view), f"the {view} image")
    screenshot = os.environ.get("TEXTSSR_APP_SCREENSHOT")
    if screenshot:
        browser.execute_script("window.scrollTo(0, 0)")
        assert browser.save_screenshot(os.path.abspath(screenshot))
    assert outside_requests(browser.get_log("performance")) == []  # works offline: no font, script or telemetry fetched from outside


def test_a_detected_line_sets_the_region(browser, app_url, photo_path):
    from selenium.webdriver.common.by import By
    open_with_photo(browser, app_url, photo_path)
    click(browser, "detect")
    wait_status(browser, "line(s) found")

    def pick_carpark(d) -> bool:
        options = d.find_elements(By.CSS_SELECTOR, "#lines li[role=option]")
        if not options:
            field(d, "lines").click()  # open the list (again, if a re-render closed it)
            return False
        carpark = [o for o in options if "'Carpark'" in o.text]
        return bool(carpark) and (carpark[0].click() or True)

    wait(browser, pick_carpark, "the line list to offer the line read 'Carpark'",
         lambda d: f"{[o.text for o in d.find_elements(By.CSS_SELECTOR, '#lines li[role=option]')]} in the list")
    wait_status(browser, "region set to the line read 'Carpark'")
    chosen = parse_polygon_arg(field(browser, "polygon").get_attribute("value"))
    assert np.abs(chosen.mean(axis=0) - parse_polygon_arg(CARPARK).mean(axis=0)).max() < 5


def test_mistakes_are_messages_in_the_page(browser, app_url, photo_path):
    from selenium.webdriver.common.by import By
    open_with_photo(browser, app_url, photo_path)
    click(browser, "generate")
    assert "no region yet" in wait_status(browser, "error")
    type_into(browser, "polygon", GENAXIS)
    click(browser, "generate")  # no text
    wait_status(browser, "text is empty")
    # Ethiopic: not in the font (and in the BMP, as chromedriver needs)
    type_into(browser, "text", "Hello\u1200")
    click(browser, "generate")
    wait_status(browser, "has no '\u1200'")
    assert "Traceback" not in browser.page_source


def performance_entry(method: str, **params) -> dict:
    """One chromedriver performance-log entry, as Chromium writes it."""
    message = {"message": {"method": method, "params": params}, "webview": "6C1E0F"}
    return {"level": "INFO", "message": json.dumps(message), "timestamp": 1767225600000}


def test_only_network_requests_off_the_loopback_count_as_outside():
    """The requests of a session with Debian 12's Chromium 150 (its new-tab page's chrome-untrusted:// frame among
    them), plus the ones the offline check is for. No browser needed."""
    def request(url):
        return performance_entry("Network.requestWillBeSent", requestId="1.1", request={"url": url, "method": "GET"})

    inside = ["chrome-untrusted://new-tab-page/one-google-bar?paramsencoded=", "chrome://new-tab-page/",
              "chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/index.html", "devtools://devtools/bundled/a.js",
              "about:blank", "data:image/png;base64,iVBORw0KGgo=", "blob:http://127.0.0.1:7860/0b5c3f52-61c1",
              "http://127.0.0.1:7860/", "http://127.0.0.1:7860/gradio_api/upload?upload_id=x", "http://localhost:7860/",
              "http://[::1]:7860/", "http://127.0.0.2/"]
    outside = ["https://fonts.googleapis.com/css2?family=Source+Sans+Pro", "http://127.0.0.1.example.com/",
               "wss://telemetry.example.org/socket", "http://10.0.0.7:7860/", "wss://push.example.com/channel"]
    log = [request(url) for url in inside + outside[:-1]]
    log += [performance_entry("Network.webSocketCreated", requestId="2", url="ws://127.0.0.1:7860/queue/join"),
            performance_entry("Network.webSocketCreated", requestId="3", url=outside[-1]),
            performance_entry("Network.responseReceived", requestId="4", response={"url": "https://x.org/"}),
            performance_entry("Page.frameNavigated", frame={"url": "chrome-untrusted://new-tab-page/"})]
    assert outside_requests(log) == outside
