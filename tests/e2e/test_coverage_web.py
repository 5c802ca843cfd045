"""The pipelines page and a pipeline's coverage map in a real browser against a real
``backfill serve`` (the example project with its start-up backfill of 2024-01-01..07):
find the gaps on the map, backfill them from there, watch them fill. Screenshots of the
new pages go to docs/img/."""

from __future__ import annotations

import os
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import expect
from tests.e2e.test_web import (  # noqa: F401  (fixtures by name)
    Server,
    Tab,
    browser,
    create_backfill,
    server,
    sign_in,
    tab,
)

REPO = Path(__file__).resolve().parents[2]
# The screenshots in docs/img/ are made by these tests: `BACKFILL_SCREENSHOTS=docs/img
# make test-e2e` renews them; otherwise they go to a temporary folder, so a test run
# leaves the working tree as it found it.
IMG = Path(os.environ.get("BACKFILL_SCREENSHOTS") or tempfile.mkdtemp(prefix="backfill-screens-"))


def test_find_the_gaps_backfill_them_and_watch_them_fill(tab: Tab, server: Server) -> None:  # noqa: F811
    page = tab.page
    sign_in(page, server)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pipelines").click()
    card = page.locator('[data-pipeline="daily_sales"]')
    expect(card.locator("svg.dag .dag-node")).to_have_count(4)  # extract, load, check, announce
    expect(card.locator('.dag-node[data-block="extract"]')).to_be_visible()
    expect(card.locator("svg.dag line.dag-edge")).not_to_have_count(0)
    page.screenshot(path=IMG / "pipelines.png", full_page=True)

    card.get_by_role("link", name="Coverage").click()
    expect(page).to_have_url(re.compile(r"#/pipelines/\d+"))
    page.locator("#cov-start").fill("2024-01-01")
    page.locator("#cov-end").fill("2024-01-14")
    page.get_by_role("button", name="Show").click()
    cells = page.locator("#cov-map .hm-cell")
    expect(cells).to_have_count(14)
    expect(page.locator('#cov-map .hm-cell[data-status="COMPLETED"]')).to_have_count(7, timeout=60_000)
    expect(page.locator('#cov-map .hm-cell[data-status="MISSING"]')).to_have_count(7)
    expect(page.get_by_role("button", name="2024-01-08: MISSING")).to_be_visible()
    expect(page.locator("#cov-summary")).to_contain_text("7 completed, 7 missing")
    page.get_by_role("button", name="2024-01-10: MISSING").click()
    expect(page.locator("#cov-selection-text")).to_have_text("MISSING: 7 intervals, 2024-01-08 → 2024-01-14")
    page.screenshot(path=IMG / "coverage.png", full_page=True)

    page.get_by_role("button", name="Backfill all gaps (7)").click()
    expect(page.get_by_role("heading", name="New backfill")).to_be_visible()
    expect(page.locator("#f-reprocess")).to_have_value("missing")
    expect(page.locator("#f-range_start")).to_have_value("2024-01-08")
    expect(page.locator("#f-range_end")).to_have_value("2024-01-14")
    expect(page.locator("#preview-run-count")).to_contain_text("7")  # the dry run, shown at once
    # The form speaks of this pipeline: its own variables, its retries, its blocks to choose from.
    expect(page.locator("#f-variables")).to_have_attribute("placeholder", re.compile(r'"orders_file": "orders.csv"'))
    expect(page.locator("#f-retries")).to_have_attribute("placeholder", "1 (the pipeline's)")
    blocks = page.locator("#f-block-list input[name=block]")
    expect(blocks).to_have_count(4)
    page.get_by_label("announce").uncheck()
    expect(page.locator("#start-hint")).to_have_text("The values changed: preview again.")
    page.get_by_label("announce").check()  # back to every block: the preview is fresh again
    expect(page.get_by_role("button", name="Start backfill")).to_be_enabled()
    page.screenshot(path=IMG / "coverage-create.png", full_page=True)
    page.get_by_role("button", name="Start backfill").click()
    expect(page).to_have_url(re.compile(r"#/backfills/\d+$"))

    page.go_back()
    page.go_back()  # the coverage map again
    expect(page).to_have_url(re.compile(r"#/pipelines/\d+"))
    expect(page.locator('#cov-map .hm-cell[data-status="COMPLETED"]')).to_have_count(14, timeout=90_000)
    expect(page.locator("#cov-summary")).to_contain_text("14 completed")
    expect(page.get_by_role("button", name="No gaps")).to_be_disabled()


def test_an_87600_interval_backfill_renders_aggregated_and_zooms(tab: Tab, server: Server) -> None:  # noqa: F811
    start = datetime(2030, 1, 1, tzinfo=UTC)
    end = start + timedelta(hours=87_599)
    backfill_id = create_backfill(
        server,
        range_start=start.isoformat().replace("+00:00", "Z"),
        range_end=end.isoformat().replace("+00:00", "Z"),
        interval_type="hour",
        max_active_runs=1,
    )
    paused = server.api("PATCH", f"/backfills/{backfill_id}", json={"paused": True})
    assert paused.status_code == 200, paused.text
    page = tab.page
    sign_in(page, server)
    began = time.perf_counter()
    page.goto(f"/#/backfills/{backfill_id}")
    cells = page.locator("#grid .agg-cell")
    expect(cells.first).to_be_visible(timeout=30_000)
    took = time.perf_counter() - began
    drawn_ms = page.locator("#grid").get_attribute("data-render-ms")
    print(
        f"\n87,600-interval backfill page: grid visible {took * 1000:.0f} ms after navigation (drawing {drawn_ms} ms)"
    )
    expect(page.locator("#count-total")).to_have_text("87,600")
    expect(page.locator("#detail-settings")).to_contain_text(f"by {server.credentials['email']}")  # not "user 1"
    expect(page.locator("#grid-zoom")).to_contain_text("87,600 intervals by weeks")
    assert 500 < cells.count() < 1500  # weeks of ten years, not 87,600 cells
    # The cards and the grid read the same data: their counts add up to the total.
    cards = [
        page.locator(f"#count-{s}").inner_text()
        for s in ("completed", "failed", "running", "queued", "cancelled", "pending")
    ]
    assert sum(int(c.replace(",", "")) for c in cards) == 87_600
    page.screenshot(path=IMG / "backfill-aggregated.png", full_page=True)
    cells.nth(1).click()  # zoom into the second week (2030-01-01 is a Tuesday): its days
    expect(page.locator("#grid-zoom")).to_contain_text("by days")
    expect(cells).to_have_count(7)
    cells.first.click()  # Monday 2030-01-07: its 24 hours
    expect(page.locator("#grid-zoom")).to_contain_text("by intervals")
    expect(cells).to_have_count(24)
    expect(page.locator("#grid .agg-cell").first).to_have_attribute("title", re.compile(r"^2030-01-07 00:00: "))
    page.get_by_role("button", name="Zoom out").click()
    expect(cells).to_have_count(7)
