"""Errors of the API as the web page shows them: a sentence naming the form's field by its
label, never the API's field name, a JSON blob, a bare status code or "[object Object]"."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, Route, expect
from tests.e2e.test_web import Server, Tab, create_backfill, fill_range, open_form, sign_in

RAW = re.compile(r"range_start|range_end|UNPROCESSABLE|INTERNAL_SERVER|HTTP_|\[object Object\]|[{}]")


def preview_error(page: Page) -> str:
    page.get_by_role("button", name="Preview").click()
    summary = page.locator("#new-error")
    expect(summary).to_be_visible()
    text = summary.inner_text()
    assert not RAW.search(text), text
    return text


def test_a_bad_date_is_named_by_its_label(tab: Tab, server: Server) -> None:
    page = tab.page
    sign_in(page, server)
    open_form(page)
    fill_range(page, "10000-01-01", "10000-01-03")  # the browser takes the year 10000, the API does not
    text = preview_error(page)
    assert text.startswith("Preview refused: Start: '10000-01-01' is not a valid date"), text
    expect(page.locator("#err-range_start")).to_contain_text("Start: '10000-01-01' is not a valid date")
    expect(page.locator("#f-range_start")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#err-range_start")).not_to_contain_text("range_start")


def test_an_overlapping_backfill_is_a_sentence_with_a_link(tab: Tab, server: Server) -> None:
    other = create_backfill(
        server, range_start="2025-05-01T00:00", range_end="2025-05-04T23:59", interval_type="minute", max_active_runs=1
    )
    try:
        page = tab.page
        sign_in(page, server)
        open_form(page)
        fill_range(page, "2025-05-02T00:00", "2025-05-02T00:09", "minute")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("#preview-summary")).to_contain_text("10 intervals would run")
        page.get_by_role("button", name="Start backfill").click()
        summary = page.locator("#new-error")
        expect(summary).to_contain_text(
            re.compile(rf"^Start refused: Backfill {other} \('.*', \w+\) already covers intervals of this range")
        )
        expect(summary).to_contain_text("cancel it or wait for it to finish.")
        assert not RAW.search(summary.inner_text()), summary.inner_text()
        expect(summary.get_by_role("link", name=f"Open backfill #{other}")).to_be_visible()
    finally:
        server.api("PATCH", f"/backfills/{other}", json={"status": "CANCELLED"})


def test_a_server_failure_or_no_network_is_a_sentence(tab: Tab, server: Server) -> None:
    page = tab.page
    sign_in(page, server)
    open_form(page)
    fill_range(page, "2024-02-01", "2024-02-03")
    replies: list[dict[str, object]] = [
        # the server's own 500
        {
            "status": 500,
            "content_type": "application/json",
            "body": json.dumps(
                {
                    "meta": {"request_id": "req-500"},
                    "error": {"code": "INTERNAL_SERVER_ERROR", "message": "an unexpected error occurred"},
                }
            ),
        },
        # a proxy's page, no JSON
        {"status": 502, "content_type": "text/html", "body": "<html><body>Bad Gateway</body></html>"},
        # an envelope whose message is not text
        {"status": 422, "content_type": "application/json", "body": json.dumps({"error": {"message": {"loc": [1]}}})},
    ]

    def answer(route: Route) -> None:
        if not replies:
            route.abort("internetdisconnected")
            return
        route.fulfill(**replies.pop(0))  # type: ignore[arg-type]

    page.route(re.compile(r"/backfills:dry_run$"), answer)
    assert preview_error(page) == (
        "Preview failed: The server hit an unexpected error. Try again in a moment; if it keeps failing, "
        "tell whoever runs the server. Request ID: req-500."
    )
    assert preview_error(page).startswith("Preview failed: The server hit an unexpected error. Try again")
    assert preview_error(page) == "Preview refused: The server refused this (HTTP 422) without saying why."
    assert preview_error(page) == (
        "Preview failed: The server cannot be reached: check your network connection and that the server is "
        "running, then try again."
    )
