"""A large backfill's aggregated grid in a real browser against a real ``backfill serve``:
any interval type aggregates (cron, weeks) by the local day its intervals start on; at the
finest zoom a cell opens its run as the plain grid does; failed intervals are chosen and
re-run from the aggregated cells."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect
from tests.e2e.test_coverage_web import IMG
from tests.e2e.test_web import Server, Tab, create_backfill, sign_in
from tests.engine.procs import wait_for


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def backfill(running: Server, backfill_id: int) -> dict[str, Any]:
    data: dict[str, Any] = running.api("GET", f"/backfills/{backfill_id}").json()["data"]
    return data


def pause(running: Server, backfill_id: int) -> None:
    paused = running.api("PATCH", f"/backfills/{backfill_id}", json={"paused": True})
    assert paused.status_code == 200, paused.text


def paused_backfill(running: Server, **body: Any) -> int:
    """A backfill created and paused at once (its grid stays as it is)."""
    backfill_id = create_backfill(running, **body)
    pause(running, backfill_id)
    return backfill_id


def open_timed(page: Page, running: Server, backfill_id: int, what: str) -> Locator:
    """Sign in and open a backfill's page; print how long its aggregated grid took to appear."""
    sign_in(page, running)
    began = time.perf_counter()
    page.goto(f"/#/backfills/{backfill_id}")
    cells = page.locator("#grid button.agg-cell")
    expect(cells.first).to_be_visible(timeout=30_000)
    took = time.perf_counter() - began
    drawn_ms = page.locator("#grid").get_attribute("data-render-ms")
    print(f"\n{what} backfill page: grid visible {took * 1000:.0f} ms after navigation (drawing {drawn_ms} ms)")
    return cells


def rerun_body(page: Page, button: str) -> dict[str, Any]:
    """Click a re-run button and return the body of the runs:rerun request it sent."""
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/runs:rerun")) as request:
        page.get_by_role("button", name=button).click()
    body: dict[str, Any] = json.loads(request.value.post_data or "{}")
    return body


def test_an_87600_interval_hourly_backfill_renders_aggregated_and_zooms(tab: Tab, server: Server) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    backfill_id = paused_backfill(
        server,
        range_start=iso(start),
        range_end=iso(start + timedelta(hours=87_599)),
        interval_type="hour",
        max_active_runs=1,
    )
    page = tab.page
    cells = open_timed(page, server, backfill_id, "87,600-interval")
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
    cells.first.click()  # Monday 2030-01-07: its 24 hours, as the plain grid's cells
    expect(page.locator("#grid-zoom")).to_contain_text("87,600 intervals, one cell each on 2030-01-07")
    hours = page.locator("#grid .agg-cells .cell")
    expect(hours).to_have_count(24)
    expect(hours.first).to_have_attribute("title", re.compile(r"^2030-01-07 00:00: pending"))
    page.get_by_role("button", name="Zoom out").click()
    expect(cells).to_have_count(7)


def test_an_87600_interval_cron_backfill_renders_by_local_days(tab: Tab, server: Server) -> None:
    start = datetime(2044, 1, 1, tzinfo=UTC)
    backfill_id = paused_backfill(
        server,
        range_start=iso(start),
        range_end=iso(start + timedelta(minutes=5 * 87_599)),
        interval_type="custom",
        cron="*/5 * * * *",
        timezone="America/New_York",
        max_active_runs=1,
    )
    page = tab.page
    cells = open_timed(page, server, backfill_id, "87,600-interval cron")
    expect(page.locator("#count-total")).to_have_text("87,600")
    expect(page.locator("#grid-zoom")).to_contain_text("87,600 intervals by days")
    # 2044-01-01T00:00Z is 2043-12-31 19:00 in New York: that local day holds 5 hours of it
    expect(cells.first).to_have_attribute("title", re.compile(r"^2043-12-31: 60 intervals"))
    expect(cells.nth(1)).to_have_attribute("title", re.compile(r"^2044-01-01: 288 intervals"))
    # 2044-03-13 is the spring-forward day in New York: 23 hours, its 02:00-02:55 fire times do not exist
    expect(page.get_by_role("button", name=re.compile(r"^2044-03-13: 276 intervals"))).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^2044-03-14: 288 intervals"))).to_be_visible()
    assert 300 < cells.count() < 320  # ten months of days, not 87,600 cells
    cells.nth(1).click()  # 2044-01-01: its 288 intervals of five minutes
    expect(page.locator("#grid-zoom")).to_contain_text("87,600 intervals, one cell each on 2044-01-01")
    minutes = page.locator("#grid .agg-cells .cell")
    expect(minutes).to_have_count(288)
    expect(minutes.first).to_have_attribute("title", re.compile(r"^2044-01-01 00:00: "))
    expect(minutes.nth(1)).to_have_attribute("title", re.compile(r"^2044-01-01 00:05: "))


def test_a_cron_backfill_across_a_fall_back_day_counts_its_wall_clock_fire_times(tab: Tab, server: Server) -> None:
    # 2043-11-01 in New York lasts 25 hours; each wall time fires once (the first 01:00-01:55).
    backfill_id = paused_backfill(
        server,
        range_start="2043-10-15T04:00:00Z",
        range_end="2043-11-15T04:55:00Z",
        interval_type="custom",
        cron="*/5 * * * *",
        timezone="America/New_York",
        max_active_runs=1,
    )
    page = tab.page
    open_timed(page, server, backfill_id, "a month of five-minute cron")
    expect(page.locator("#grid-zoom")).to_contain_text("intervals by days")
    for day in ("2043-10-31", "2043-11-01", "2043-11-02"):
        expect(page.get_by_role("button", name=re.compile(rf"^{day}: 288 intervals"))).to_be_visible()
    page.get_by_role("button", name=re.compile(r"^2043-11-02: ")).click()
    expect(page.locator("#grid .agg-cells .cell").first).to_have_attribute("title", re.compile(r"^2043-11-02 00:00: "))


# series: (body, the bar's text, (cell, title) pairs, (cell to zoom into, its days, its first day's title))
CALENDAR_SERIES: dict[str, tuple[dict[str, Any], str, list[tuple[int, str]], tuple[int, int, str]]] = {
    # Mondays of January 2100: 4, 11, 18, 25; of March 2100: 1, 8, 15, 22, 29
    "weekly": (
        {"range_start": "2100-01-04", "range_end": "2199-12-28", "interval_type": "week"},
        "5,217 intervals by months",
        [(0, "Jan 2100: 4 intervals,"), (2, "Mar 2100: 5 intervals,")],
        (2, 5, "2100-03-01: 1 interval,"),
    ),
    # from a 31st: each boundary from the first start, its day clamped (Feb 29 1504, Apr 30 1504)
    "monthly": (
        {"range_start": "1504-01-31", "range_end": "2004-12-31", "interval_type": "month"},
        "6,012 intervals by months",
        [(0, "Jan 1504: 1 interval,"), (3, "Apr 1504: 1 interval,")],
        (1, 1, "1504-02-29: 1 interval,"),
    ),
    # every other day: January 2300 the 1st, 3rd, … 31st; February the 2nd, … 28th
    "two-day": (
        {"range_start": "2300-01-01", "range_end": "2330-12-31", "interval_type": "day", "interval_units": 2},
        "5,661 intervals by months",
        [(0, "Jan 2300: 16 intervals,"), (1, "Feb 2300: 14 intervals,")],
        (1, 14, "2300-02-02: 1 interval,"),
    ),
}


@pytest.mark.parametrize("series", list(CALENDAR_SERIES))
def test_calendar_backfills_above_5000_intervals_render_by_the_day_each_interval_starts(
    tab: Tab, server: Server, series: str
) -> None:
    body, bar, titles, (zoom, days, first_day) = CALENDAR_SERIES[series]
    backfill_id = paused_backfill(server, max_active_runs=1, **body)
    page = tab.page
    cells = open_timed(page, server, backfill_id, f"{bar.split(' by ')[0]} {series}")
    expect(page.locator("#grid-zoom")).to_contain_text(bar)
    for nth, title in titles:
        expect(cells.nth(nth)).to_have_attribute("title", re.compile(f"^{re.escape(title)}"))
    cells.nth(zoom).click()  # that month by days: each interval on the day it starts
    expect(page.locator("#grid-zoom")).to_contain_text("by days")
    expect(cells).to_have_count(days)
    expect(cells.first).to_have_attribute("title", re.compile(f"^{re.escape(first_day)}"))


def test_failed_intervals_open_and_rerun_from_the_aggregated_grid(tab: Tab, server: Server) -> None:
    start = datetime(2041, 1, 1, tzinfo=UTC)
    backfill_id = create_backfill(
        server,
        name="big and broken",
        range_start=iso(start),
        range_end=iso(start + timedelta(days=209)),  # 5,017 hours: the last day holds one
        interval_type="hour",
        variables={"orders_file": "missing.csv"},  # extract fails: no such file
        retries=0,
        max_active_runs=4,
    )
    # Newest first: the last day's hour fails first, then the day before's.
    wait_for(lambda: backfill(server, backfill_id)["transfer_runs_failed"] >= 3, timeout=90, interval=0.3)
    pause(server, backfill_id)
    wait_for(lambda: backfill(server, backfill_id)["transfer_runs_running"] == 0, timeout=60, interval=0.3)
    failed_total = backfill(server, backfill_id)["transfer_runs_failed"]

    page = tab.page
    sign_in(page, server)
    page.goto(f"/#/backfills/{backfill_id}")
    expect(page.locator("#grid-zoom")).to_contain_text("5,017 intervals by days")
    expect(page.locator("#count-failed")).to_have_text(str(failed_total))
    days = page.locator("#grid button.agg-cell")
    last_day = days.last
    expect(last_day).to_have_attribute("title", re.compile(r"^2041-07-29: 1 interval, 1 failed"))
    day_before = days.nth(days.count() - 2)
    failed_before = int(day_before.get_attribute("data-failed") or 0)
    assert failed_before >= 1

    # The finest zoom: a day's hours as the plain grid's cells; a click opens the run.
    day_before.click()
    hours = page.locator("#grid .agg-cells .cell")
    expect(hours).to_have_count(24)
    failed_cells = page.locator('#grid .agg-cells [data-run-id][data-status="FAILED"]')
    expect(failed_cells).to_have_count(failed_before)
    page.get_by_role("button", name="2041-07-28T23:00:00Z: FAILED").click()
    expect(page.locator("#run-title")).to_have_text("Interval 2041-07-28T23:00:00Z")
    expect(page.locator("#run-status")).to_have_text("FAILED")
    expect(page.locator("#run-error")).to_contain_text("FileNotFoundError")
    expect(page.locator("#run-blocks")).to_contain_text("extract")
    page.locator("#grid").locator("xpath=..").screenshot(path=IMG / "backfill-aggregated-day.png")
    page.get_by_role("button", name="Close").click()

    # Ctrl-click chooses one failed hour; re-running it queues it again (the backfill is paused).
    latest = page.get_by_role("button", name="2041-07-28T23:00:00Z: FAILED")
    run_id = int(latest.get_attribute("data-run-id") or 0)
    latest.click(modifiers=["Control"])
    expect(page.locator("#rerun-count")).to_have_text("1 failed interval selected")
    assert rerun_body(page, "Re-run 1 interval") == {"run_ids": [run_id]}
    expect(page.locator(f'#grid [data-run-id="{run_id}"]')).to_have_attribute("data-status", "QUEUED")
    expect(page.locator("#count-failed")).to_have_text(str(failed_total - 1))

    # A chosen day re-runs its failed intervals (by run id: not all of the backfill's).
    page.get_by_role("button", name="Zoom out").click()
    expect(page.locator("#grid-zoom")).to_contain_text("by days")
    days.last.click(modifiers=["Control"])
    expect(page.locator("#rerun-count")).to_have_text("1 failed interval selected")
    body = rerun_body(page, "Re-run 1 interval")
    assert list(body) == ["run_ids"] and len(body["run_ids"]) == 1, body
    run = server.api("GET", f"/transfer_runs/{body['run_ids'][0]}").json()["data"]
    assert run["interval_start"] == "2041-07-29T00:00:00Z"
    expect(page.locator("#count-failed")).to_have_text(str(failed_total - 2))
    expect(days.last).to_have_attribute("title", re.compile(r"^2041-07-29: 1 interval, 1 queued"))  # grid redrawn

    # "Select failed": every failed interval in view, re-run by status.
    page.get_by_role("button", name="Select failed").click()
    left = failed_total - 2
    expect(page.locator("#rerun-count")).to_have_text(f"{left} failed interval{'s' if left != 1 else ''} selected")
    assert rerun_body(page, f"Re-run {left} interval{'s' if left != 1 else ''}") == {"statuses": ["FAILED"]}
    expect(page.locator("#count-failed")).to_have_text("0")
    expect(page.locator("#rerun-error")).to_be_hidden()


def test_a_weekday_cron_backfill_puts_one_interval_on_each_weekday_and_none_on_weekends(
    tab: Tab, server: Server
) -> None:
    # Weekdays at 09:00 in Berlin, Mon 2201-01-05 to Fri 2221-12-28: 5,475 intervals, none on a Saturday or Sunday.
    backfill_id = paused_backfill(
        server,
        range_start="2201-01-05",
        range_end="2221-12-28T09:00",
        interval_type="custom",
        cron="0 9 * * 1-5",
        timezone="Europe/Berlin",
        max_active_runs=1,
    )
    page = tab.page
    weeks = open_timed(page, server, backfill_id, "5,475-interval weekday cron")
    expect(page.locator("#grid-zoom")).to_contain_text("5,475 intervals by weeks")
    expect(weeks).to_have_count(1095)
    # Every week holds its five weekdays (the first: Mon 2201-01-05 to Fri 2201-01-09).
    assert set(weeks.evaluate_all("cells => cells.map((c) => c.dataset.total)")) == {"5"}
    expect(weeks.first).to_have_attribute("title", re.compile(r"^week of 2201-01-05: 5 intervals, 5 missing"))
    # The week of Mon 2201-03-30: Berlin's clocks went forward on Sunday the 29th.
    weeks.nth(12).click()
    expect(page.locator("#grid-zoom")).to_contain_text("by days")
    days = page.locator("#grid button.agg-cell")
    expect(days).to_have_count(5)  # no cell for Saturday or Sunday: they hold no interval
    titles = days.evaluate_all("cells => cells.map((c) => c.title)")
    dates = ["2201-03-30", "2201-03-31", "2201-04-01", "2201-04-02", "2201-04-03"]
    assert titles == [f"{d}: 1 interval, 1 missing" for d in dates], titles
    assert all(datetime.fromisoformat(t[:10]).weekday() < 5 for t in titles)
    days.first.click()  # Monday: its one interval at 09:00 Berlin time
    expect(page.locator("#grid .agg-cells .cell")).to_have_count(1)
    expect(page.locator("#grid .agg-cells .cell").first).to_have_attribute(
        "title", re.compile(r"^2201-03-30 09:00: pending")
    )
    page.get_by_role("button", name="Zoom out").click()
    page.get_by_role("button", name="Zoom out").click()
    expect(page.locator("#grid-zoom")).to_contain_text("by weeks")
