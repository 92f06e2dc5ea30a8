"""The playground page in headless Chromium, against a real ``storytool serve``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); Selenium is told
where both are, so it never downloads a browser or a driver. Without them the test is skipped
locally and fails under CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.fakes.cutting_proxy import ProxyThread

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
OUTPUT = Path(__file__).parents[2] / "test-output"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not IN_CI:
    pytest.skip(
        "headless Chromium not installed: apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``storytool serve`` on a temporary SQLite database, writing slowly enough to cancel."""
    folder = tmp_path_factory.mktemp("playground")
    port = free_port()
    env = os.environ | {
        "STORYTOOL_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'storytool.db'}",
        "STORYTOOL_DATA_DIR": str(folder),
        "STORYTOOL_INDEX_DIR": str(folder / "indexes"),
        "STORYTOOL_LLM_PROVIDER": "offline",
        "STORYTOOL_AUTH_MODE": "local",
        "STORYTOOL_OFFLINE_CHARS_PER_SECOND": "80",
    }
    command = [str(Path(sys.executable).with_name("storytool")), "serve", "--port", str(port)]
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
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
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, condition, seconds: float = 20):
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda _d: condition())


def text_of(driver: WebDriver, element_id: str) -> str:
    """The element's text exactly as the page holds it (Selenium's ``.text`` trims)."""
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def state(driver: WebDriver) -> str | None:
    return driver.find_element(By.ID, "status").get_attribute("data-state")


def start_story(driver: WebDriver, url: str, prompt: str, *, length: str) -> None:
    driver.get(f"{url}/")
    driver.execute_script("localStorage.clear()")
    driver.refresh()
    driver.find_element(By.ID, "prompt").send_keys(prompt)
    driver.find_element(By.ID, "tags").send_keys("모험, 우정")
    Select(driver.find_element(By.ID, "length")).select_by_value(length)
    # Every text the story box shows, with its stage, as the page changes it.
    driver.execute_script(
        "window.shown = []; const story = document.getElementById('story');"
        "new MutationObserver(() => window.shown.push([story.dataset.stage, story.textContent]))"
        ".observe(story, {childList: true, characterData: true, subtree: true});"
    )
    driver.find_element(By.ID, "generate").click()
    # The refine's text is on screen, after the draft was shown first, dimmed.
    wait(driver, lambda: driver.execute_script("return window.shown.some(s => s[0] === 'refine')"))
    stages = [stage for stage, text in driver.execute_script("return window.shown") if text]
    assert stages[0] == "draft"
    assert stages.index("refine") > 0
    assert "draft" not in stages[stages.index("refine") :]


def stored_turns(url: str) -> list[dict]:
    threads = httpx.get(f"{url}/api/retrieveChatHistoryList").json()["items"]
    newest = threads[0]["id"]
    detail = httpx.get(f"{url}/api/retrieveChatHistoryDetail", params={"thread_id": newest})
    return detail.json()["conversations"]


def test_write_cancel_reload_and_find_the_story_in_the_history(browser: WebDriver, server_url: str):
    start_story(browser, server_url, "한 선비가 과거 길에 올라 산적을 만나니", length="long")
    browser.find_element(By.ID, "cancel").click()
    wait(browser, lambda: state(browser) == "cancelled")
    partial = text_of(browser, "story")
    [turn] = [t for t in stored_turns(server_url) if t["user_input"].startswith("한 선비가")]
    assert turn["status"] == "cancelled"
    assert turn["tags"] == ["모험", "우정"]
    assert partial == turn["story"]

    browser.refresh()
    wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#history li button"))
    assert state(browser) == "idle"  # nothing left to resume
    entry = browser.find_element(By.CSS_SELECTOR, "#history li button")
    [listed] = httpx.get(f"{server_url}/api/retrieveChatHistoryList").json()["items"]
    assert entry.get_attribute("textContent") == (listed["title"] or listed["preview"])
    entry.click()
    saved = wait(
        browser,
        lambda: browser.find_elements(By.CSS_SELECTOR, f'[data-conversation-id="{turn["id"]}"]'),
    )[0]
    assert saved.find_element(By.CSS_SELECTOR, ".story").get_attribute("textContent") == partial
    like = saved.find_element(By.CSS_SELECTOR, "button.like")
    like.click()
    wait(browser, lambda: like.get_attribute("aria-pressed") == "true")
    assert stored_turns(server_url)[0]["evaluation"]["rating"] == "like"

    OUTPUT.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(OUTPUT / "playground.png"))


def test_a_reload_mid_story_resumes_it_to_the_end(browser: WebDriver, server_url: str):
    start_story(browser, server_url, "두 벗이 달밤에 이별하니", length="short")
    browser.refresh()
    wait(browser, lambda: state(browser) == "running")
    wait(browser, lambda: state(browser) == "completed", seconds=30)

    [turn] = [t for t in stored_turns(server_url) if t["user_input"] == "두 벗이 달밤에 이별하니"]
    assert turn["status"] == "completed"
    assert text_of(browser, "story") == turn["story"]
    assert text_of(browser, "title") == f"《{turn['title']}》"
    assert browser.execute_script("return localStorage.getItem('storytool.running')") is None


def test_search_without_an_index_shows_the_servers_reason(browser: WebDriver, server_url: str):
    browser.get(f"{server_url}/")
    browser.find_element(By.ID, "search-query").send_keys("달밤에 이별하다")
    browser.find_element(By.ID, "search").click()
    message = wait(browser, lambda: text_of(browser, "search-results"))
    assert "index build" in message


def test_a_dropped_stream_is_resumed_with_every_word_once(browser: WebDriver, server_url: str):
    port = int(server_url.rsplit(":", 1)[1])
    with ProxyThread(port, cuts=[10]) as proxy:
        start_story(browser, proxy.url, "늙은 어부가 용왕을 만나니", length="short")
        wait(browser, lambda: state(browser) == "completed", seconds=30)
        assert proxy.cut == 1

    [turn] = [t for t in stored_turns(server_url) if t["user_input"] == "늙은 어부가 용왕을 만나니"]
    assert text_of(browser, "story") == turn["story"]
    assert text_of(browser, "title") == f"《{turn['title']}》"


def test_a_story_the_server_no_longer_streams_is_not_resumed(browser: WebDriver, server_url: str):
    browser.get(f"{server_url}/")
    gone = {"thread_id": str(uuid.uuid4()), "conversation_id": str(uuid.uuid4())}
    browser.execute_script(
        "localStorage.setItem('storytool.running', arguments[0])", json.dumps(gone)
    )
    browser.refresh()
    wait(browser, lambda: state(browser) == "idle")
    assert "no longer live" in text_of(browser, "status")
    assert browser.execute_script("return localStorage.getItem('storytool.running')") is None
    assert browser.find_element(By.ID, "generate").is_enabled()
