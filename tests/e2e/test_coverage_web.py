"""The pipelines page and a pipeline's coverage map in a real browser against a real
``backfill serve`` (the example project with its start-up backfill of 2024-01-01..07):
find the gaps on the map, backfill them from there, watch them fill. Screenshots of the
new pages go to docs/img/."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from playwright.sync_api import expect
from tests.e2e.test_web import Server, Tab, sign_in

REPO = Path(__file__).resolve().parents[2]
# The screenshots in docs/img/ are made by these tests: `BACKFILL_SCREENSHOTS=docs/img
# make test-e2e` renews them; otherwise they go to a temporary folder, so a test run
# leaves the working tree as it found it.
IMG = Path(os.environ.get("BACKFILL_SCREENSHOTS") or tempfile.mkdtemp(prefix="backfill-screens-"))


def test_find_the_gaps_backfill_them_and_watch_them_fill(tab: Tab, server: Server) -> None:
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
