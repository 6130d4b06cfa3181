"""The page `ftk serve` shows at /, driven in a real headless browser:
Debian's chromium through its chromedriver (nothing downloads a browser).
Each test saves a screenshot under `tests/artifacts/` (or $FTK_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import ftk

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("FTK_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))
WAIT_S = 60


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-proxy-server", "--window-size=1000,1200"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def submitted(driver, url: str, fill) -> None:
    """Open the page, fill its input with `fill(driver)`, submit, and wait
    for the result or an error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(shown.visibility_of_element_located((By.ID, "submit")))
    fill(driver)
    driver.find_element(By.ID, "submit").click()
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed()
               or d.find_element(By.ID, "error").is_displayed())
    assert not driver.find_element(By.ID, "error").is_displayed(), \
        driver.find_element(By.ID, "error").text


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_the_page_classifies_a_typed_text(browser, text, text_server):
    from selenium.webdriver.common.by import By

    sentence = "referee goal stadium"
    expected = ftk.load(text.run_dir).predict([sentence])[0]
    url, _ = text_server
    submitted(browser, url, lambda d: d.find_element(By.ID, "input-text").send_keys(sentence))
    screenshot(browser, "page-text")
    assert browser.find_element(By.ID, "title").text == "topics"
    assert browser.find_element(By.ID, "label").text.startswith(expected["label"] + " (")
    rows = browser.find_elements(By.CSS_SELECTOR, "#output .row .name")
    assert [row.text for row in rows] == sorted(
        expected["scores"], key=expected["scores"].get, reverse=True)[:5]
    assert browser.find_element(By.ID, "latency").text.startswith("Server ")


def test_the_page_draws_the_detections_of_an_uploaded_picture(browser, detection,
                                                              detection_server):
    from selenium.webdriver.common.by import By

    picture = detection.inputs[0]
    expected = ftk.load(detection.run_dir).predict([picture])[0]
    url, _ = detection_server
    submitted(browser, url, lambda d: d.find_element(By.ID, "input-file").send_keys(picture))
    screenshot(browser, "page-detection")
    kept = [found for found in expected["detections"] if found["score"] >= 0.3]
    assert kept, "the picture needs detections over the page's minimum to draw"
    assert browser.find_element(By.ID, "label").text == \
        f"{len(kept)} found with a score of at least 0.3"
    rows = browser.find_elements(By.CSS_SELECTOR, "#output .detection")
    assert [row.text.split()[0] for row in rows] == [found["label"] for found in kept]
    canvas = browser.find_element(By.ID, "picture")
    assert canvas.is_displayed()
    # The canvas holds the picture at its own size, boxes drawn over it.
    from PIL import Image

    width, height = Image.open(picture).size
    assert (int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))) == (
        width, height)
    drawn = browser.execute_script(
        "const c = document.getElementById('picture').getContext('2d');"
        "const d = c.getImageData(0, 0, c.canvas.width, c.canvas.height).data;"
        "let red = 0; for (let i = 0; i < d.length; i += 4) {"
        "  if (d[i] === 255 && d[i + 1] === 45 && d[i + 2] === 85) red++; } return red;")
    assert (drawn > 0) == bool(kept)
    # Every detection, with the minimum at 0.
    browser.find_element(By.ID, "min-score").clear()
    browser.find_element(By.ID, "min-score").send_keys("0")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#output .detection")) == \
        expected["count"]


def test_the_page_shows_an_undecodable_upload_as_an_error(browser, image_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    url, _ = image_server
    browser.get(url + "/")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "input-file").is_displayed())
    browser.find_element(By.ID, "input-file").send_keys(str(broken))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "error").is_displayed())
    screenshot(browser, "page-error")
    assert browser.find_element(By.ID, "error").text.startswith("instances[0]:")
