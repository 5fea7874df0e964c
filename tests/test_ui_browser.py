"""The chat app in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

Starts the app on a free loopback port, picks the SynthCXR effusion preset, asks for the differences and
checks that the agent's steps stream into the chat, that the top hypothesis appears in the table, and that
selecting it shows its image gallery and score plot.
"""

import shutil
import socket
from pathlib import Path

import pytest

from raddiff.screenshots import CHROMIUM_ARGS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium) - no browser to drive")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")
    from raddiff.chat.app import launch
    from raddiff.chat.config import AppConfig

    base = tmp_path_factory.mktemp("chat")
    config = AppConfig(
        roots=[],
        output_dir=base / "runs",
        cache_dir=base / "cache",
        scorer="reports",
        max_rounds=2,
        preset_n=8,
        context={"use_images": False},
    )
    port = _free_port()
    demo = launch(config, port=port, block=False, quiet=True)
    try:
        assert demo.server_name == "127.0.0.1"  # loopback only unless asked
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_chat_streams_steps_and_shows_top_hypothesis_with_gallery(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(app_url)
            page.get_by_label("SynthCXR preset", exact=True).first.check()
            preset = page.locator("#preset input")
            preset.click()
            page.get_by_role("option", name="effusion", exact=True).click()
            expect(preset).to_have_value("effusion")
            page.locator("#message textarea").fill("What are the differences?")
            page.locator("#send").click()
            chat = page.locator("#chat")
            # streamed steps: collapsible step and tool-call titles appear while the run goes on
            expect(chat).to_contain_text("Step: survey", timeout=120_000)
            expect(chat).to_contain_text("Tool call: score_hypotheses", timeout=120_000)
            expect(chat).to_contain_text("Differences", timeout=120_000)
            expect(chat).to_contain_text("has moderate right pleural effusion more often", timeout=30_000)
            top = page.locator('#hypotheses [role="row"][aria-rowindex="2"]')  # first body row (row 1 = header)
            expect(top).to_contain_text("pleural effusion", timeout=30_000)
            expect(page.locator('#hypotheses [data-testid="cell-0-2"]')).to_have_text("A")  # more in A
            page.locator('#hypotheses [data-testid="cell-0-1"]').click()
            gallery = page.locator("#gallery img")
            expect(gallery.first).to_be_visible(timeout=30_000)
            assert gallery.count() >= 4  # most and least typical of each group
            expect(page.locator("#gallery")).to_contain_text("most typical of A")
            expect(page.locator("#plot")).to_be_visible()
            expect(page.locator("#plot img, #plot svg, #plot canvas").first).to_be_visible(timeout=30_000)
            expect(page.locator("#selected")).to_contain_text("effusion")
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()


def test_named_path_outside_roots_is_refused_in_the_page(app_url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(app_url)
            page.get_by_label("Two folders", exact=True).first.check()
            page.locator("#source-first textarea, #source-first input").first.fill("/etc")
            page.locator("#source-second textarea, #source-second input").first.fill("/usr")
            page.locator("#message textarea").fill("what differs?")
            page.locator("#send").click()
            expect(page.locator("#chat")).to_contain_text("outside the folders this app may read", timeout=30_000)
        finally:
            browser.close()
