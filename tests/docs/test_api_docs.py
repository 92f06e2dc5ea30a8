"""``/docs`` and ``/redoc`` work without a network: every asset the pages load comes from the app,
and in a browser that can reach nothing but the server both pages show the API."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from storytool.config import Settings
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

CONTENT_TYPES = {
    ".js": "javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}

# Every URL a page names: attributes, and Swagger UI's ``url: '...'`` in its inline script.
_URL = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|\burl: '([^']*)'""")


def docs_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, index_dir=tmp_path, **overrides)  # type: ignore[call-arg]


@pytest.fixture
async def docs_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The pages and their assets need no database: the app runs without its lifespan."""
    transport = httpx.ASGITransport(app=create_app(docs_settings(tmp_path)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_asset_of_the_page_is_served_by_the_app(
    docs_client: httpx.AsyncClient, page: str
):
    answer = await docs_client.get(page)
    assert answer.status_code == 200
    assert "http://" not in answer.text
    assert "https://" not in answer.text
    urls = {first or second for first, second in _URL.findall(answer.text)}
    assert "/openapi.json" in urls
    assert len(urls) >= 3  # the page's script, its favicon, the schema (and Swagger UI's style)
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        asset = await docs_client.get(url)
        assert asset.status_code == 200, url
        assert CONTENT_TYPES[Path(url).suffix] in asset.headers["content-type"], url
        assert len(asset.content) > 1000, url


async def test_switched_off_the_assets_are_gone_too(tmp_path: Path):
    transport = httpx.ASGITransport(app=create_app(docs_settings(tmp_path, docs_enabled=False)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = [
            await client.get(path)
            for path in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js")
        ]
    assert [answer.status_code for answer in answers] == [404, 404, 404]


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    app = create_app(docs_settings(tmp_path_factory.mktemp("docs")))
    with ServerThread(app, lifespan="off") as server:
        yield server


@pytest.fixture(scope="module")
def offline_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium whose host resolver finds nothing but loopback: a page that still
    loaded from a CDN would stay blank."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not IN_CI:
        pytest.skip("headless Chromium not installed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_argument("--headless")
    options.add_argument("--no-sandbox")
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-docs')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize(
    ("page", "operation"),
    [
        ("/docs", ".opblock-summary-path[data-path='/api/generate']"),
        ("/redoc", "[data-section-id^='tag/generation/operation']"),
    ],
)
def test_offline_the_page_shows_the_operations_and_asks_nothing_of_another_host(
    docs_server: ServerThread, offline_browser: WebDriver, page: str, operation: str
):
    offline_browser.get(f"{docs_server.url}{page}")
    WebDriverWait(offline_browser, 30, poll_frequency=0.1).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, operation)
    )
    requested = offline_browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    errors = [
        entry["message"]
        for entry in offline_browser.get_log("browser")
        if entry["level"] == "SEVERE"
    ]
    assert f"{docs_server.url}/openapi.json" in requested
    for url in requested:
        if not url.startswith(docs_server.url):
            # ReDoc's sidebar logo comes from a CDN: the page's policy stops it unsent.
            assert any(url in error and "Content Security Policy" in error for error in errors)
    assert all("Content Security Policy" in error for error in errors), errors


def test_swagger_ui_shows_the_request_example_and_the_events(
    docs_server: ServerThread, offline_browser: WebDriver
):
    offline_browser.get(f"{docs_server.url}/docs#/generation/generate_api_generate_post")
    operation = "#operations-generation-generate_api_generate_post"
    shown = WebDriverWait(offline_browser, 30, poll_frequency=0.1).until(
        lambda driver: [
            element.text
            for element in driver.find_elements(By.CSS_SELECTOR, f"{operation} pre")
            if element.text
        ]
    )
    assert any('"user_input": "한 선비가 과거 길에 올라 산적을 만나니"' in text for text in shown)
    assert any("cancelled" in text and "partial_story" in text for text in shown)
