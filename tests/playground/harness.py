"""What the playground's browser tests share: a real ``storytool serve`` on a temporary SQLite
database, headless Chromium driven by Selenium, and waits on the page's state.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); Selenium is told
where both are, so it never downloads a browser or a driver. Without them the tests are skipped
locally and fail under CI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
OUTPUT = Path(__file__).parents[2] / "test-output"
STORYTOOL = Path(sys.executable).with_name("storytool")
DEMO_CORPUS = Path(__file__).parents[2] / "indexes" / "demo.corpus.jsonl"

T = TypeVar("T")


def skip_without_chromium() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not IN_CI:
        pytest.skip(
            "headless Chromium not installed: apt-get install -y chromium chromium-driver",
            allow_module_level=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(folder: Path, **settings: str) -> dict[str, str]:
    """A local-mode, offline server whose data all lives in ``folder``."""
    return os.environ | {
        "STORYTOOL_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'storytool.db'}",
        "STORYTOOL_DATA_DIR": str(folder),
        "STORYTOOL_INDEX_DIR": str(folder / "indexes"),
        "STORYTOOL_LLM_PROVIDER": "offline",
        "STORYTOOL_AUTH_MODE": "local",
        **settings,
    }


@contextmanager
def serve(folder: Path, env: dict[str, str]) -> Iterator[str]:
    """``storytool serve`` until the block ends; yields its URL once /healthz answers."""
    port = free_port()
    command = [str(STORYTOOL), "serve", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"storytool serve did not start: {process.stderr.read()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def chromium(profile: Path, *, downloads: Path | None = None) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1600",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "download.directory_upgrade": True,
            },
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        if downloads is not None:
            driver.execute_cdp_cmd(
                "Browser.setDownloadBehavior",
                {"behavior": "allow", "downloadPath": str(downloads)},
            )
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, condition: Callable[[], T], seconds: float = 20) -> T:
    """Until ``condition()`` is truthy; an element the page redrew meanwhile counts as not yet."""
    return WebDriverWait(
        driver, seconds, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(lambda _d: condition())


def click(driver: WebDriver, selector: str) -> None:
    """Clicks what ``selector`` finds once it is there, finding it again if the page redraws it
    between the finding and the click."""

    def clicked() -> bool:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        if not found:
            return False
        found[0].click()
        return True

    wait(driver, clicked)


def text_of(driver: WebDriver, element_id: str) -> str:
    """The element's text exactly as the page holds it (Selenium's ``.text`` trims)."""
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def state(driver: WebDriver) -> str | None:
    return driver.find_element(By.ID, "status").get_attribute("data-state")


def viewport(driver: WebDriver, width: int, height: int, *, mobile: bool = False) -> None:
    """The page's viewport exactly this size (the window's own size includes no chrome in
    headless mode, but a window narrower than ~500 px is not honoured)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def record_story(driver: WebDriver) -> None:
    """From now on ``window.shown`` holds every (stage, text) the story box shows, in order."""
    driver.execute_script(
        "window.shown = []; const story = document.getElementById('story');"
        "new MutationObserver(() => window.shown.push([story.dataset.stage, story.textContent]))"
        ".observe(story, {childList: true, characterData: true, subtree: true});"
    )


def assert_draft_then_refine(driver: WebDriver) -> None:
    """Waits for the refine's text on screen and checks the draft was shown before it, dimmed,
    and never again after it."""
    wait(driver, lambda: driver.execute_script("return window.shown.some(s => s[0] === 'refine')"))
    stages = [stage for stage, text in driver.execute_script("return window.shown") if text]
    assert stages[0] == "draft"
    assert stages.index("refine") > 0
    assert "draft" not in stages[stages.index("refine") :]


def bracketed(title: str | None) -> str:
    return f"《{title}》" if title else ""


def thread_detail(url: str, thread_id: str) -> dict:
    answer = httpx.get(f"{url}/api/retrieveChatHistoryDetail", params={"thread_id": thread_id})
    answer.raise_for_status()
    return answer.json()


def threads(url: str) -> list[dict]:
    return httpx.get(f"{url}/api/retrieveChatHistoryList", params={"limit": 100}).json()["items"]


def page_errors(driver: WebDriver) -> list[str]:
    """Script errors and Content-Security-Policy refusals the page logged since the last call
    (failed requests, which the page handles and shows, are not among them)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and ("Uncaught" in entry["message"] or "Content Security Policy" in entry["message"])
    ]
