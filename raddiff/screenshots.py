"""Screenshots for the docs: the chat app, a trace page and an HTML report, taken in headless Chromium.

``python -m raddiff.screenshots --out docs`` starts the app on a free loopback port, picks the SynthCXR
effusion preset, asks for the differences, selects the top hypothesis and saves ``chat_app.png``; then
renders the run's trace page and its report and saves ``trace_page.png`` and ``html_report.png``. Needs
Debian's ``chromium`` and the ``playwright`` Python package (no browser download).
"""

from __future__ import annotations

import argparse
import logging
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raddiff.chat.config import AppConfig

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Interrupt(KeyboardInterrupt):
    pass


def interrupted_run(config: AppConfig, run_dir: Path) -> Path:
    """Run the agent on the effusion preset, interrupt it after its first verification, then resume it."""
    from agent.context import RunContext
    from graphs.run import run_agent
    from raddiff.chat.config import load_source

    comparison = load_source(config, "SynthCXR preset", preset="effusion")
    ctx = RunContext(
        run_id=run_dir.name, run_dir=run_dir, scorer=config.scorer, describer=config.describer, max_rounds=3
    )

    def stop_after_verify(node: str, update: dict[str, object]) -> None:
        if node == "verify":
            raise _Interrupt

    try:
        run_agent(comparison, ctx, question="look at the right base", on_event=stop_after_verify)
    except _Interrupt:
        log.info("run %s interrupted after its first verification, as planned; resuming", ctx.run_id)
    run_agent(None, ctx, resume=True)
    return run_dir


def take_screenshots(
    out: Path, work: Path, *, scorer: str = "mini", describer: str = "mini", n: int | None = None
) -> None:
    """Drive the app and save the three screenshots into ``out``."""
    from playwright.sync_api import expect, sync_playwright

    from raddiff.chat.app import launch
    from raddiff.chat.config import AppConfig
    from raddiff.trace_viewer import load_outline, trace_html
    from tools.settings import Settings

    out.mkdir(parents=True, exist_ok=True)
    config = AppConfig(
        output_dir=work / "runs",
        cache_dir=Settings().cache_dir,
        scorer=scorer,
        describer=describer,
        max_rounds=3,
        preset_n=n,
    )
    port = _free_port()
    demo = launch(config, port=port, block=False, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#message textarea").fill("What are the differences between the two groups?")
            page.locator("#send").click()
            expect(page.locator("#chat")).to_contain_text("Ranked differences", timeout=600_000)
            page.locator('#hypotheses [data-testid="cell-0-1"]').click()
            expect(page.locator("#gallery img").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "chat_app.png"), full_page=True)
            run_dir = next(p for p in (work / "runs").iterdir() if (p / "report.html").is_file())
            trace_dir = interrupted_run(config, work / "interrupted")
            trace_file = work / "trace.html"
            trace_file.write_text(trace_html(load_outline(trace_dir), trace_dir.name), encoding="utf-8")
            page.set_viewport_size({"width": 1100, "height": 900})
            page.goto(trace_file.as_uri())
            page.screenshot(path=str(out / "trace_page.png"), full_page=False)
            page.set_viewport_size({"width": 1250, "height": 1400})
            page.goto((run_dir / "report.html").as_uri())
            page.screenshot(path=str(out / "html_report.png"), full_page=False)
            browser.close()
    finally:
        demo.close()


def main() -> None:
    """Command line: ``python -m raddiff.screenshots --out docs``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--scorer", default="mini")
    parser.add_argument("--describer", default="mini")
    parser.add_argument("--n", type=int, help="Studies per group of the preset (default: the preset's 30).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raddiff-shots-") as work:
        take_screenshots(args.out, Path(work), scorer=args.scorer, describer=args.describer, n=args.n)


if __name__ == "__main__":
    main()
