"""The writing desk walked end to end in headless Chromium, as a writer would use it: a new story
(the draft streams, then the refine replaces it), cancel, regenerate, select a variant, continue
with a direction, like with reasons and a comment, analyze, search, export; a new thread that is
really new; both widths (1280x800 and a 390 px phone) with screenshots under ``test-output/``; and
the language switch.

The server writes at a slow offline pace so the walk can act mid-stream, and builds the demo
index with the hashing embedder (a fraction of a second) so search answers. Every wait is on the
page's state or the stored state, never a sleep.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.playground.harness import (
    DEMO_CORPUS,
    OUTPUT,
    STORYTOOL,
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
    thread_detail,
    threads,
    viewport,
    wait,
)

skip_without_chromium()

DESKTOP = (1280, 800)
PHONE = (390, 844)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("desk")
    env = server_env(folder, STORYTOOL_OFFLINE_CHARS_PER_SECOND="120", STORYTOOL_EMBEDDER="hashing")
    subprocess.run(
        [str(STORYTOOL), "index", "build", str(DEMO_CORPUS), "--name", "demo"],
        env=env,
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with serve(folder, env) as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium-profile"), downloads=downloads) as driver:
        yield driver


def screenshot(driver: WebDriver, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(OUTPUT / name))


def current_thread(driver: WebDriver) -> str | None:
    return driver.find_element(By.ID, "current-thread").get_attribute("data-thread-id")


def by_css(driver: WebDriver, selector: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def card(driver: WebDriver, conversation_id: str) -> WebElement:
    return driver.find_element(
        By.CSS_SELECTOR, f'#detail [data-conversation-id="{conversation_id}"]'
    )


def rect(driver: WebDriver, element: WebElement) -> dict[str, float]:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width};",
        element,
    )


def in_view(driver: WebDriver, element: WebElement) -> bool:
    """Wholly or partly on screen without scrolling anything, and not hidden."""
    box = rect(driver, element)
    width, height = driver.execute_script("return [innerWidth, innerHeight]")
    return (
        element.is_displayed()
        and box["width"] > 0
        and box["top"] < height
        and box["bottom"] > 0
        and box["left"] >= 0
        and box["right"] <= width
    )


def pressed(element: WebElement) -> bool:
    return element.get_attribute("aria-pressed") == "true"


def evaluation(url: str, thread_id: str, conversation_id: str) -> dict:
    [turn] = [
        t for t in thread_detail(url, thread_id)["conversations"] if t["id"] == conversation_id
    ]
    return turn["evaluation"] or {"rating": "none", "reasons": [], "comment": None}


def reason_chip(driver: WebDriver, reason: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'#reasons button[data-reason="{reason}"]')


def wider_than_the_screen(driver: WebDriver) -> list[str]:
    """The elements that reach past the viewport's right edge (none can, or the page scrolls
    sideways), each as tag#id.class: its text."""
    return driver.execute_script(
        "const width = document.documentElement.clientWidth; const out = [];"
        "for (const e of document.body.querySelectorAll('*')) {"
        "  if (e.closest('.variants') && !e.classList.contains('variants')) continue;"
        "  const r = e.getBoundingClientRect();"
        "  if (r.width && r.right > width + 0.5) out.push("
        "    `${e.tagName}#${e.id}.${e.className}: ${(e.textContent || '').slice(0, 40)}`);"
        "}"
        "if (document.documentElement.scrollWidth > width) out.push('scrollWidth');"
        "return out;"
    )


def run_to_the_end(driver: WebDriver, button_id: str) -> None:
    driver.find_element(By.ID, button_id).click()
    wait(driver, lambda: state(driver) == "running")
    wait(driver, lambda: state(driver) == "completed", seconds=60)


def test_the_writing_desk_walk(browser: WebDriver, server_url: str, downloads: Path):
    b = browser
    viewport(b, *DESKTOP)
    b.get(f"{server_url}/")
    b.execute_script("localStorage.clear()")
    b.refresh()

    # Korean by default; no thread yet, and the page says a new one will be made.
    assert b.execute_script("return document.documentElement.lang") == "ko"
    assert text_of(b, "new-thread") == "새 이야기"
    assert text_of(b, "generate") == "새 이야기 쓰기"
    assert current_thread(b) == ""

    # --- a new story: the draft streams, then the refine replaces it; the stages show it ---
    b.find_element(By.ID, "prompt").send_keys("두 벗이 달밤에 이별하니")
    b.find_element(By.ID, "tags").send_keys("우정, 이별")
    Select(b.find_element(By.ID, "length")).select_by_value("long")
    record_story(b)
    b.find_element(By.ID, "generate").click()
    assert_draft_then_refine(b)
    stage = {name: f'#stages li[data-name="{name}"]' for name in ("draft", "refine", "title")}
    assert by_css(b, stage["draft"])[0].get_attribute("data-status") == "done"
    assert by_css(b, stage["refine"])[0].get_attribute("data-status") == "started"
    assert by_css(b, stage["title"])[0].get_attribute("data-status") == "pending"
    labels = [li.get_attribute("textContent") for li in by_css(b, "#stages li")]
    assert labels == ["초고", "다듬기", "제목", "추천"]
    wait(b, lambda: current_thread(b) != "")  # the thread made for it is the current one now
    thread_id = current_thread(b)
    assert (
        b.find_element(By.ID, "prompt").get_attribute("value") == ""
    )  # stored: ready for the next
    screenshot(b, "desk-1-streaming-1280x800.png")

    # --- cancel mid-refine: the partial story stays, stored as cancelled ---
    b.find_element(By.ID, "cancel").click()
    wait(b, lambda: state(b) == "cancelled")
    assert by_css(b, stage["refine"])[0].get_attribute("data-status") == "stopped"
    [first] = thread_detail(server_url, thread_id)["conversations"]
    assert first["status"] == "cancelled"
    assert first["tags"] == ["우정", "이별"]
    assert text_of(b, "story") == first["story"] != ""
    wait(b, lambda: card(b, first["id"]).get_attribute("data-status") == "cancelled")

    # --- regenerate: another variant of the same input, in the same thread ---
    Select(b.find_element(By.ID, "length")).select_by_value("short")
    run_to_the_end(b, "regenerate")
    detail = thread_detail(server_url, thread_id)
    [group] = detail["inputs"]
    assert group["user_input"] == "두 벗이 달밤에 이별하니"
    assert group["variants"][0] == first["id"]
    [second] = [t for t in detail["conversations"] if t["id"] == group["variants"][1]]
    assert second["mode"] == "regenerate"
    assert second["parent_conversation_id"] == first["id"]
    assert second["status"] == "completed"
    assert text_of(b, "story") == second["story"] != first["story"]
    # The title is bracketed once, as the server sends it bare.
    assert text_of(b, "title") == bracketed(second["title"])
    assert "《《" not in text_of(b, "title")
    assert "〈" not in text_of(b, "title")

    # The variants side by side, in view beside the desk (not below the fold).
    wait(b, lambda: card(b, second["id"]).get_attribute("data-status") == "completed")
    wait(b, lambda: len(by_css(b, f'[data-input-id="{first["id"]}"] .variant')) == 2)
    one, two = by_css(b, f'[data-input-id="{first["id"]}"] .variant')
    assert rect(b, one)["top"] == rect(b, two)["top"]
    assert rect(b, one)["right"] <= rect(b, two)["left"]
    assert in_view(b, one)
    assert in_view(b, two)
    assert in_view(b, b.find_element(By.ID, "story"))

    # --- select the second variant: stored, marked, and on the desk ---
    click(b, f'#detail [data-conversation-id="{second["id"]}"] button.select')
    wait(b, lambda: pressed(card(b, second["id"]).find_element(By.CSS_SELECTOR, "button.select")))
    assert card(b, second["id"]).get_attribute("data-selected") == "true"
    assert card(b, first["id"]).get_attribute("data-selected") == "false"
    assert thread_detail(server_url, thread_id)["inputs"][0]["selected"] == second["id"]
    assert text_of(b, "story") == second["story"]
    screenshot(b, "desk-2-variants-1280x800.png")

    # --- continue the selected variant with a direction ---
    direction = "십 년 뒤 두 벗이 다시 만나니"
    b.find_element(By.ID, "direction").send_keys(direction)
    run_to_the_end(b, "continue")
    detail = thread_detail(server_url, thread_id)
    assert len(detail["inputs"]) == 2
    continued = detail["inputs"][1]
    assert continued["mode"] == "continue"
    assert continued["continues"] == second["id"]
    assert continued["user_input"] == direction
    [third] = [t for t in detail["conversations"] if t["id"] == continued["conversation_id"]]
    assert third["status"] == "completed"
    assert text_of(b, "story") == third["story"]
    assert text_of(b, "title") == bracketed(third["title"])
    wait(b, lambda: card(b, third["id"]).get_attribute("data-status") == "completed")
    group_text = f'[data-input-id="{third["id"]}"] .input .text'
    wait(b, lambda: by_css(b, group_text) and by_css(b, group_text)[0].text == direction)
    assert len(detail["conversations"]) == 3  # nothing went anywhere else

    # --- like with reasons; a comment, and a change of mind, keep the reasons ---
    b.find_element(By.ID, "like").click()
    reason_chip(b, "style").click()
    reason_chip(b, "plot").click()
    wait(b, lambda: evaluation(server_url, thread_id, third["id"])["reasons"] == ["style", "plot"])
    assert evaluation(server_url, thread_id, third["id"])["rating"] == "like"
    assert pressed(b.find_element(By.ID, "like"))
    assert pressed(reason_chip(b, "style"))
    b.find_element(By.ID, "comment").send_keys("문체가 고풍스럽고 좋다")
    b.find_element(By.ID, "save-comment").click()
    wait(
        b,
        lambda: (
            evaluation(server_url, thread_id, third["id"])["comment"] == "문체가 고풍스럽고 좋다"
        ),
    )
    assert evaluation(server_url, thread_id, third["id"])["reasons"] == ["style", "plot"]
    b.find_element(By.ID, "dislike").click()
    wait(b, lambda: evaluation(server_url, thread_id, third["id"])["rating"] == "dislike")
    stored = evaluation(server_url, thread_id, third["id"])
    assert stored["reasons"] == ["style", "plot"]
    assert stored["comment"] == "문체가 고풍스럽고 좋다"
    b.find_element(By.ID, "like").click()
    wait(b, lambda: evaluation(server_url, thread_id, third["id"])["rating"] == "like")
    assert evaluation(server_url, thread_id, third["id"])["reasons"] == ["style", "plot"]
    # Reasons go only when asked: one chip un-pressed, then all cleared, then one again.
    reason_chip(b, "plot").click()
    wait(b, lambda: evaluation(server_url, thread_id, third["id"])["reasons"] == ["style"])
    b.find_element(By.ID, "clear-reasons").click()
    wait(b, lambda: evaluation(server_url, thread_id, third["id"])["reasons"] == [])
    reason_chip(b, "anachronism").click()
    wait(b, lambda: evaluation(server_url, thread_id, third["id"])["reasons"] == ["anachronism"])
    stored = evaluation(server_url, thread_id, third["id"])
    assert stored["rating"] == "like"
    assert stored["comment"] == "문체가 고풍스럽고 좋다"
    wait(b, lambda: b.find_element(By.ID, "rating-saved").get_attribute("data-state") == "saved")
    assert [pressed(reason_chip(b, r)) for r in ("style", "plot", "anachronism")] == [
        False,
        False,
        True,
    ]

    # --- analyze: metrics as the server measured them, markers highlighted at their offsets ---
    b.find_element(By.ID, "analyze").click()
    wait(b, lambda: b.find_element(By.ID, "analysis").is_displayed())
    expected = httpx.post(f"{server_url}/api/analyze", json={"conversation_id": third["id"]})
    metrics = expected.json()["metrics"]

    def metric(name: str) -> str:
        return b.find_element(By.CSS_SELECTOR, f'#metrics [data-metric="{name}"] dd').text

    assert metric("characters") == str(metrics["characters"])
    assert metric("sentences") == str(metrics["sentences"])
    assert metric("words") == str(metrics["words"])
    assert metric("paragraphs") == str(metrics["paragraphs"])
    assert metric("endings") == str(metrics["markers"]["endings"]["total"])
    assert metric("transitions") == str(metrics["markers"]["transitions"]["total"])
    assert text_of(b, "analysis-text") == third["story"]
    marks = b.execute_script(
        "return Array.from(document.querySelectorAll('#analysis-text mark')).map(m =>"
        " [m.className, m.dataset.marker, Number(m.dataset.start), Number(m.dataset.end),"
        " m.textContent])"
    )
    points = list(third["story"])  # offsets count code points
    occurrences = [("ending", o) for o in metrics["markers"]["endings"]["occurrences"]] + [
        ("transition", o) for o in metrics["markers"]["transitions"]["occurrences"]
    ]
    assert metrics["markers"]["endings"]["total"] > 0  # a classical story has them
    assert len(marks) == len(occurrences)
    for kind, o in occurrences:
        text = "".join(points[o["start"] : o["end"]])
        assert [kind, o["marker"], o["start"], o["end"], text] in marks
    assert in_view(b, b.find_element(By.ID, "analysis-heading"))  # scrolled to
    screenshot(b, "desk-3-analysis-1280x800.png")

    # --- a recommendation becomes the next prompt ---
    recommendation = by_css(b, "#recommendations button.rec")[0]
    suggested = recommendation.text
    recommendation.click()
    assert b.find_element(By.ID, "prompt").get_attribute("value") == suggested

    # --- search: passages and their suggestions, which also become a prompt ---
    b.find_element(By.ID, "search-query").send_keys("달밤에 벗과 이별하는 장면")
    b.find_element(By.ID, "search").click()
    wait(b, lambda: len(by_css(b, "#search-results .passage")) == 5)
    answer = httpx.post(
        f"{server_url}/api/search", json={"query": "달밤에 벗과 이별하는 장면", "top_k": 5}
    ).json()
    shown = [p.get_attribute("data-passage-id") for p in by_css(b, "#search-results .passage")]
    assert shown == [str(p["id"]) for p in answer["passages"]]
    [first_passage] = by_css(b, "#search-results .passage")[:1]
    assert answer["passages"][0]["text"] in first_passage.text
    if answer["recommendations"]:
        by_css(b, "#search-recommendations button.rec")[0].click()
        assert (
            b.find_element(By.ID, "prompt").get_attribute("value") == (answer["recommendations"][0])
        )

    # --- export: the thread downloads as Markdown; the JSON link is the thread's detail ---
    markdown_link = b.find_element(By.CSS_SELECTOR, "#detail a.export-md")
    markdown_link.click()

    def downloaded() -> list[Path]:
        return [p for p in downloads.iterdir() if p.suffix == ".md"]

    [exported] = wait(b, downloaded)
    markdown = exported.read_text(encoding="utf-8")
    assert markdown.startswith(f"# {detail['title']}\n")
    for turn in (first, second, third):
        assert turn["story"].splitlines()[0] in markdown
    assert f"> {direction}" in markdown
    json_href = b.find_element(By.CSS_SELECTOR, "#detail a.export-json").get_attribute("href")
    exported_json = httpx.get(json_href)
    assert exported_json.status_code == 200
    assert exported_json.json()["id"] == thread_id

    # --- both widths: the thread in view on the desktop, nothing wider than a phone ---
    screenshot(b, "desk-4-1280x800.png")
    assert in_view(b, b.find_element(By.ID, "detail"))
    assert in_view(b, b.find_element(By.ID, "new-thread"))
    viewport(b, *PHONE, mobile=True)
    b.execute_script("window.scrollTo(0, 0)")
    with contextlib.suppress(TimeoutException):  # the layout settles at the new width
        wait(b, lambda: wider_than_the_screen(b) == [], seconds=5)
    assert wider_than_the_screen(b) == []
    for control in ("new-thread", "prompt", "generate"):
        assert in_view(b, b.find_element(By.ID, control)), control
    screenshot(b, "desk-5-390x844.png")
    b.execute_script("document.getElementById('detail').scrollIntoView()")
    variants = by_css(b, f'[data-input-id="{first["id"]}"] .variant')
    assert rect(b, variants[0])["top"] == rect(b, variants[1])["top"]  # side by side here too
    screenshot(b, "desk-6-thread-390x844.png")
    b.execute_script("document.getElementById('analysis').scrollIntoView()")
    assert wider_than_the_screen(b) == []
    screenshot(b, "desk-7-analysis-390x844.png")
    viewport(b, *DESKTOP)

    # --- 새 이야기: the next story starts a thread of its own, never the open one ---
    b.find_element(By.ID, "new-thread").click()
    assert current_thread(b) == ""
    assert text_of(b, "generate") == "새 이야기 쓰기"
    assert text_of(b, "story") == ""
    assert text_of(b, "title") == ""
    prompt = b.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("늙은 어부가 용왕을 만나니")
    run_to_the_end(b, "generate")
    assert current_thread(b) not in ("", thread_id)
    listed = {t["id"]: t for t in threads(server_url)}
    assert len(listed) == 2
    assert listed[thread_id]["conversation_count"] == 3
    assert listed[current_thread(b)]["conversation_count"] == 1

    # Opening the first thread from the history makes it the current one, and the page says
    # where the next story goes.
    entry = f'#history li[data-thread-id="{thread_id}"] button'
    wait(b, lambda: b.find_element(By.CSS_SELECTOR, entry).text)
    assert b.find_element(By.CSS_SELECTOR, entry).text == bracketed(listed[thread_id]["title"])
    click(b, entry)
    wait(b, lambda: current_thread(b) == thread_id)
    assert text_of(b, "generate") == "이 이야기에 쓰기"
    assert text_of(b, "current-thread").startswith(bracketed(listed[thread_id]["title"]))
    # The last input's pick is on the desk: the continuation.
    wait(b, lambda: text_of(b, "story") == third["story"])
    assert pressed(b.find_element(By.ID, "like"))
    assert pressed(reason_chip(b, "anachronism"))
    assert b.find_element(By.ID, "comment").get_attribute("value") == "문체가 고풍스럽고 좋다"
    assert page_errors(b) == []


def test_the_language_switch_is_remembered(browser: WebDriver, server_url: str):
    b = browser
    viewport(b, *DESKTOP)
    b.get(f"{server_url}/")
    b.execute_script("localStorage.clear()")
    b.refresh()
    assert text_of(b, "lang") == "English"
    b.find_element(By.ID, "lang").click()
    assert b.execute_script("return document.documentElement.lang") == "en"
    assert text_of(b, "new-thread") == "New story"
    assert text_of(b, "generate") == "Write a new story"
    assert text_of(b, "status") == "Ready."
    assert b.find_element(By.ID, "prompt").get_attribute("placeholder") == "한 선비가 길을 떠나니"
    assert text_of(b, "lang") == "한국어"

    b.refresh()  # remembered
    wait(b, lambda: b.execute_script("return document.documentElement.lang") == "en")
    assert text_of(b, "new-thread") == "New story"
    # Dynamic parts follow too: a thread opened in English shows English labels.
    click(b, "#history li button")
    wait(b, lambda: by_css(b, "#detail .variant button.view"))
    assert by_css(b, "#detail .variant button.view")[0].text == "View"
    assert text_of(b, "generate") == "Write in this story"
    assert reason_chip(b, "too_long").text == "too long"

    b.find_element(By.ID, "lang").click()
    assert b.execute_script("return localStorage.getItem('storytool.lang')") == "ko"
    assert by_css(b, "#detail .variant button.view")[0].text == "보기"
    assert reason_chip(b, "too_long").text == "너무 긺"
    assert text_of(b, "generate") == "이 이야기에 쓰기"
    assert page_errors(b) == []


def test_a_delete_asks_twice_and_leaves_a_new_thread(browser: WebDriver, server_url: str):
    b = browser
    viewport(b, *DESKTOP)
    b.get(f"{server_url}/")
    before = {t["id"] for t in threads(server_url)}
    doomed = sorted(before)[0]
    click(b, f'#history li[data-thread-id="{doomed}"] button')
    wait(b, lambda: current_thread(b) == doomed and by_css(b, "#delete-thread"))
    b.find_element(By.ID, "delete-thread").click()
    wait(b, lambda: b.find_element(By.ID, "delete-thread").get_attribute("data-armed") == "true")
    assert {t["id"] for t in threads(server_url)} == before  # not yet
    b.find_element(By.ID, "delete-thread").click()
    wait(b, lambda: current_thread(b) == "")
    wait(b, lambda: not by_css(b, f'#history li[data-thread-id="{doomed}"]'))
    assert {t["id"] for t in threads(server_url)} == before - {doomed}
