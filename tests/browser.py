"""A real headless Chromium for the admin page's tests, and a small helper to drive the page.

Needs Debian's chromium and chromium-driver (.ci/run installs them). Without them a test skips
and says so, except under CI=true, where a missing browser fails the run rather than hiding it.
Set SCREENSHOT_DIR to keep the screenshots the tests take.
"""
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _need_browser():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"no browser for the admin page test: {', '.join(missing)} missing; apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser(tmp_path):
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def screenshot(driver, tmp_path, name: str) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


class Page:
    def __init__(self, driver, url):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.By = driver, By
        self.wait = WebDriverWait(driver, 15)
        driver.get(url + "/admin/ui/")

    def el(self, element_id):
        return self.driver.find_element(self.By.ID, element_id)

    def css(self, selector):
        return self.driver.find_elements(self.By.CSS_SELECTOR, selector)

    def until_text(self, element_id, *fragments):
        self.wait.until(lambda _: all(f in self.el(element_id).text for f in fragments),
                        f"#{element_id} to show {fragments}; it shows {self.el(element_id).text!r}")
        return self.el(element_id).text

    def type_into(self, element_id, text):
        box = self.el(element_id)
        box.clear()
        box.send_keys(text)

    def sign_in(self, token):
        self.type_into("token", token)
        self.el("login-button").click()
