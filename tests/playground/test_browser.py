"""The playground page in headless Chromium, against a real ``storytool serve`` (see
:mod:`tests.playground.harness`): streaming, cancel, reload, resume, the history.
The whole writing-desk walk is in ``test_desk.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.fakes.cutting_proxy import ProxyThread
from tests.playground.harness import (
    OUTPUT,
    assert_draft_then_refine,
    bracketed,
    chromium,
    click,
    page_errors,
    record_story,
    serve,
    server_env,
    skip_without_chromium,
    state,
    text_of,
    wait,
)

skip_without_chromium()


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``storytool serve`` on a temporary SQLite database, writing slowly enough to cancel."""
    folder = tmp_path_factory.mktemp("playground")
    with serve(folder, server_env(folder, STORYTOOL_OFFLINE_CHARS_PER_SECOND="80")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver
        assert page_errors(driver) == []


def start_story(driver: WebDriver, url: str, prompt: str, *, length: str) -> None:
    driver.get(f"{url}/")
    driver.execute_script("localStorage.clear()")
    driver.refresh()
    driver.find_element(By.ID, "prompt").send_keys(prompt)
    driver.find_element(By.ID, "tags").send_keys("모험, 우정")
    Select(driver.find_element(By.ID, "length")).select_by_value(length)
    # Every text the story box shows, with its stage, as the page changes it.
    record_story(driver)
    driver.find_element(By.ID, "generate").click()
    # The refine's text is on screen, after the draft was shown first, dimmed.
    assert_draft_then_refine(driver)


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
    assert entry.get_attribute("textContent") == (bracketed(listed["title"]) or listed["preview"])
    click(browser, "#history li button")
    # The thread opens as the current one, its turn in the thread panel and on the desk.
    wait(
        browser,
        lambda: (
            browser.find_element(By.ID, "current-thread").get_attribute("data-thread-id")
            == listed["id"]
        ),
    )
    saved = f'#detail [data-conversation-id="{turn["id"]}"]'
    wait(
        browser,
        lambda: (
            browser.find_element(By.CSS_SELECTOR, f"{saved} .story").get_attribute("textContent")
            == partial
        ),
    )
    click(browser, f"{saved} button.view")
    wait(browser, lambda: text_of(browser, "story") == partial)
    like = browser.find_element(By.ID, "like")
    like.click()
    wait(browser, lambda: like.get_attribute("aria-pressed") == "true")
    wait(browser, lambda: (stored_turns(server_url)[0]["evaluation"] or {}).get("rating") == "like")

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
    assert browser.find_element(By.ID, "status").get_attribute("data-key") == "gone"
    assert "더 이상" in text_of(browser, "status")  # Korean by default
    assert browser.execute_script("return localStorage.getItem('storytool.running')") is None
    assert browser.find_element(By.ID, "generate").is_enabled()
