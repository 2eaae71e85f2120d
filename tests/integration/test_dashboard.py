"""The dashboard in a real browser (Debian's chromium, driven by Playwright), opened on a
follower coordinator of a private stack: three healthy regions, then — without a reload — the
primary's region turning UNHEALTHY after its agent and database are killed, its incident, and
the failover that follows going through its steps to COMPLETED.

Screenshots go to $LATITUDE_ARTIFACTS/dashboard (else the test's tmp_path); the path is printed
even when output is captured.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.test_failover import failover_from, kill_region, status

pytestmark = pytest.mark.stack

CHROMIUM = Path("/usr/bin/chromium")
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
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")

# Kept in the page: every failover phase the panel showed, in order. A reload would lose it.
RECORD_PHASES = """() => {
  window.phasesSeen = [];
  const panel = document.getElementById("failover");
  const note = () => {
    const phase = panel.dataset.phase;
    if (phase && window.phasesSeen.at(-1) !== phase) window.phasesSeen.push(phase);
  };
  new MutationObserver(note).observe(panel, { attributes: true, attributeFilter: ["data-phase"] });
  note();
}"""

UNDER_WAY = """() => ["FENCING", "SELECTING", "PROMOTING", "REPOINTING"].includes(
  document.getElementById("failover").dataset.phase)"""


@pytest.fixture
def dashboard_stack():
    with running_stack() as stack:
        yield stack


@pytest.fixture
def artifacts(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    path = Path(os.environ.get("LATITUDE_ARTIFACTS") or tmp_path) / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():  # shown whether or not output is captured
        print(f"\ndashboard screenshots in {path}")
    return path


async def follower_page_address(stack: Stack) -> tuple[str, str]:
    """(id, host:port) of a coordinator's HTTP listener that is not the leader's."""
    view = await status(stack)
    assert view is not None and view.leader.leader_id, f"no leader: {view}"
    http = stack.http_addresses(stack.state())
    follower = next(
        n for n in sorted(http) if n.startswith("coordinator-") and n != view.leader.leader_id
    )
    return follower, http[follower]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (as root: apt-get install chromium)"
)
async def test_the_page_on_a_follower_follows_a_region_failing_and_its_failover(
    dashboard_stack: Stack, artifacts: Path, tmp_path: Path
):
    from playwright.async_api import async_playwright, expect

    stack = dashboard_stack
    follower, address = await follower_page_address(stack)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 960},
        )
        try:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"http://{address}/")

            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            await expect(page.locator("#responder")).to_have_text(follower)
            await expect(page.locator("#write-region")).to_have_text("us-east-1")
            for region in REGIONS:
                card = page.locator(f'article.card[data-region="{region}"]')
                await expect(card).to_have_attribute("data-state", "HEALTHY", timeout=15_000)
            await expect(page.locator('#map g[data-state="HEALTHY"]')).to_have_count(3)
            await page.screenshot(path=artifacts / "1-healthy.png", full_page=True)
            await page.evaluate(RECORD_PHASES)

            killed_at = await kill_region(stack, "us-east-1")
            old = page.locator('article.card[data-region="us-east-1"]')
            await expect(old).to_have_attribute("data-state", "UNHEALTHY", timeout=20_000)
            await page.screenshot(path=artifacts / "2-unhealthy.png", full_page=True)
            incident = page.locator('#incidents li[data-severity="CRITICAL"]')
            await expect(incident.first).to_contain_text("us-east-1", timeout=20_000)

            panel = page.locator("#failover")
            await page.wait_for_function(UNDER_WAY, timeout=20_000)
            await page.screenshot(path=artifacts / "3-failover-under-way.png", full_page=True)
            # The control plane's own record first (its timing is test_failover's business:
            # on a loaded machine the rejoins around a failover can take a while), then the
            # page, which must follow it within a few of its 0.5 s reads.
            record = await failover_from(stack, "us-east-1", timeout=60, since=killed_at)
            assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record
            await expect(panel).to_have_attribute("data-phase", "COMPLETED", timeout=10_000)
            await expect(panel).to_have_attribute("data-failover", record.failover_id)
            await expect(page.locator("#write-region")).to_have_text(record.to_region)
            for step in ("detected", "fenced", "selected", "promoted", "redirected", "repointed"):
                await expect(panel.locator(f'li[data-step="{step}"]')).to_have_attribute(
                    "data-status", "done"
                )
            new = page.locator(f'article.card[data-region="{record.to_region}"]')
            await expect(new.locator(".badge.write")).to_have_text("WRITE")
            await expect(new.locator('[data-field="role"]')).to_have_text("primary")
            await expect(new).to_have_attribute("data-state", "HEALTHY", timeout=15_000)
            await expect(old).to_have_attribute("data-state", "UNHEALTHY", timeout=15_000)
            # The history chart (sampled every 5 s, fetched every 5 s) shows it too.
            unhealthy = old.locator('.chart rect[data-state="UNHEALTHY"]')
            await expect(unhealthy.first).to_be_attached(timeout=25_000)
            await page.screenshot(path=artifacts / "4-failover-completed.png", full_page=True)

            # Followed live: the same page (its recorder survived) showed every phase of the
            # failover, in order, as the leader wrote it.
            phases = await page.evaluate("window.phasesSeen")
            assert phases is not None, "the page was reloaded"
            assert phases == ["FENCING", "SELECTING", "PROMOTING", "REPOINTING", "COMPLETED"]
            await expect(page.locator("#events")).to_contain_text(f"promoted {record.to_region}")
            assert errors == [], errors
        finally:
            await browser.close()
