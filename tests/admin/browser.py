"""A real browser for the nsqadmin page tests: Debian's Chromium driven by selenium.

`browser_missing()` says why no browser can run here (None when one can).
The tests skip with that reason locally; CI (`.ci/run`) installs Chromium
and chromedriver and sets NSQ_SYNC_REQUIRE_BROWSER=1, so there a missing
browser fails the run instead of hiding behind a skip.

`Browser` starts one headless Chromium (its own fresh profile directory,
no network services of its own, loopback only) with JavaScript on or off,
and has the few reads the tests need: a page's visible text, a table's
rows, waiting with a deadline for the page to show something.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Callable, List, Optional, TypeVar

CHROMIUM = os.environ.get("NSQ_SYNC_CHROMIUM", "chromium")
CHROMEDRIVER = os.environ.get("NSQ_SYNC_CHROMEDRIVER", "chromedriver")
REQUIRE = "NSQ_SYNC_REQUIRE_BROWSER"

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1024"]

T = TypeVar("T")


def browser_missing() -> Optional[str]:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the test extra: pip install -e '.[test]')"
    for exe, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(exe) is None:
            return "no %s on PATH (apt-get install %s)" % (exe, package)
    return None


def required() -> bool:
    return os.environ.get(REQUIRE, "") not in ("", "0")


class Browser:
    """One headless Chromium session (JavaScript on or off)."""

    def __init__(self, javascript: bool = True, page_timeout: float = 60.0) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="nsq-sync-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which(CHROMIUM) or CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument("--user-data-dir=" + self.profile)
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2})
        service = Service(shutil.which(CHROMEDRIVER) or CHROMEDRIVER)
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(page_timeout)
        self.driver.set_script_timeout(page_timeout)
        self.javascript = javascript

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # ------------------------------------------------------------ reading

    def get(self, url: str) -> None:
        self.driver.get(url)

    def text(self, css: str = "body") -> str:
        """What a user sees in an element (visible text only)."""
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def rows(self, css: str) -> List[List[str]]:
        """The visible cell texts of each body row of a table."""
        from selenium.webdriver.common.by import By

        table = self.driver.find_element(By.CSS_SELECTOR, css)
        out = []
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
            cells = tr.find_elements(By.CSS_SELECTOR, "th, td")
            out.append([c.text.strip() for c in cells])
        return out

    def headers(self, css: str) -> List[str]:
        from selenium.webdriver.common.by import By

        table = self.driver.find_element(By.CSS_SELECTOR, css)
        return [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]

    def wait(self, predicate: Callable[[], T], timeout: float = 20.0, what: str = "the page"
             ) -> T:
        """Poll predicate (page reads may fail while a page reloads) until truthy."""
        from selenium.common.exceptions import WebDriverException

        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except (WebDriverException, AssertionError, LookupError) as e:
                last = e
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s: %r" % (what, last))
            time.sleep(0.1)

    def alert_text(self) -> Optional[str]:
        """The text of an open alert/confirm dialog, or None when there is none."""
        from selenium.common.exceptions import NoAlertPresentException

        try:
            return self.driver.switch_to.alert.text
        except NoAlertPresentException:
            return None

    def console_errors(self) -> List[str]:
        """Errors the page logged since the last call (scripts, CSP, failed loads), no favicon."""
        entries = self.driver.get_log("browser")
        return [e["message"] for e in entries
                if e.get("level") == "SEVERE" and "favicon.ico" not in e.get("message", "")]

    def screenshot(self, path: str) -> bytes:
        """Save a PNG of the page and return its bytes."""
        assert self.driver.save_screenshot(path), path
        with open(path, "rb") as f:
            return f.read()
