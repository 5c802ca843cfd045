"""The web page (docs/api.md) in a real browser against a real ``backfill serve``.

One server for the module (the README's command: the example project with its start-up
backfill, in a fresh directory); each test opens its own tab and signs in with the
first-start credentials. Waits are on conditions only (Playwright's auto-waiting
``expect``), never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from tests.databases import isolated_db_url
from tests.engine.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PIPELINE_LABEL = "Daily sales per store (daily_sales)"

expect.set_options(timeout=15_000)


@dataclass
class Server:
    url: str
    cwd: Path
    credentials: dict[str, Any]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A direct call to the team API as the owner (to set up or race the page)."""
        url = f"{self.url}/v1/teams/{self.credentials['team_id']}{path}"
        headers = {"Authorization": f"Bearer {self.credentials['token']}"}
        return httpx.request(method, url, headers=headers, timeout=10, **kwargs)


@dataclass
class Tab:
    page: Page
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def responds(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def serving(cwd: Path, project: Path, *args: str) -> Iterator[Server]:
    """``backfill serve`` of a project in ``cwd`` on its own database (a SQLite file, or a
    PostgreSQL schema when BACKFILL_TEST_DATABASE_URL is set), stopped afterwards."""
    port = free_port()
    with isolated_db_url(cwd, prefix="e2e") as db_url:
        cmd = [
            sys.executable, "-m", "backfill", "serve", "--project", str(project), "--db", db_url,
            "--port", str(port), "--workers", "2", *args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
        env["BACKFILL_SCHEDULER_INTERVAL_SECONDS"] = "0.2"
        log = open(cwd / "serve.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for(lambda: responds(url), timeout=60, interval=0.2)
            except AssertionError:
                raise AssertionError((cwd / "serve.log").read_text()[-3000:]) from None
            page = httpx.get(f"{url}/", timeout=5)
            assert page.status_code == 200, (
                "GET / is not the web page: create_app must include backfill.web.router "
                "(app.include_router(web.router))"
            )
            credentials = json.loads((cwd / ".backfill" / "credentials.json").read_text())
            assert credentials.get("password"), "the first-start credentials have no password"
            yield Server(url=url, cwd=cwd, credentials=credentials)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The README's command: the example project with its start-up backfill."""
    cwd = tmp_path_factory.mktemp("serve")
    with serving(cwd, REPO / "examples" / "shop", "--backfill", "daily_sales,2024-01-01,2024-01-07") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium); .ci/run does")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def tab(browser: Browser, server: Server) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    tab = Tab(page)
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert tab.errors == [], tab.errors  # no uncaught script error on the page


def sign_in(page: Page, server: Server) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(server.credentials["email"])
    page.get_by_label("Password").fill(server.credentials["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Backfills")).to_be_visible()
    expect(page.locator("#who-email")).to_have_text(server.credentials["email"])


def open_form(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New backfill").click()
    expect(page.get_by_role("heading", name="New backfill")).to_be_visible()
    page.get_by_label("Pipeline", exact=True).select_option(label=PIPELINE_LABEL)


def fill_range(page: Page, start: str, end: str, interval: str | None = None) -> None:
    """The create form's interval (when given) and range."""
    if interval:
        page.get_by_label("Interval", exact=True).select_option(interval)
    page.get_by_label("Start (first interval, inclusive)").fill(start)
    page.get_by_label("End (last interval, inclusive)").fill(end)


def create_backfill(server: Server, **body: Any) -> int:
    """A backfill of the example pipeline created through the API (not the page)."""
    transfers = server.api("GET", "/transfers").json()["data"]
    transfer_id = next(t["id"] for t in transfers if t["uuid"] == "daily_sales")
    created = server.api("POST", f"/transfers/{transfer_id}/backfills", json=body)
    assert created.status_code == 200, created.text
    return int(created.json()["data"]["transfer_backfill_id"])


def start_from_preview(page: Page) -> int:
    page.get_by_role("button", name="Start backfill").click()
    expect(page).to_have_url(re.compile(r"#/backfills/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


# ---- tests ----------------------------------------------------------------------------------------


def test_sign_in_list_grid_and_log_of_the_example_backfill(tab: Tab, server: Server, tmp_path: Path) -> None:
    page = tab.page
    page.goto("/")
    page.get_by_label("Email").fill(server.credentials["email"])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_have_text("Wrong email or password.")

    sign_in(page, server)
    page.get_by_label("All").check()  # the example may already be finished
    row = page.locator('#backfill-rows tr[data-backfill-id="1"]')
    expect(row).to_contain_text("daily_sales 2024-01-01 → 2024-01-07")
    expect(row.locator(".progress")).to_have_attribute("aria-label", re.compile(r"of 7 completed"))
    expect(row.locator(".progress-text")).to_have_text("7/7 finished", timeout=60_000)
    expect(row.locator(".badge").first).to_have_text("COMPLETED")

    row.get_by_role("link", name="#1").click()
    expect(page).to_have_url(re.compile(r"#/backfills/1$"))
    completed = page.locator('#grid [data-status="COMPLETED"]')
    expect(completed).to_have_count(7, timeout=60_000)
    expect(page.locator("#detail-status")).to_have_text("COMPLETED")
    expect(page.locator("#count-completed")).to_have_text("7")
    for name in ("Pause", "Resume", "Retry failed", "Cancel"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()

    page.get_by_role("button", name="2024-01-03: COMPLETED").click()
    expect(page.locator("#run-title")).to_have_text("Interval 2024-01-03")
    expect(page.locator("#run-status")).to_have_text("COMPLETED")
    expect(page.locator("#run-log")).to_contain_text("daily_sales 2024-01-03 done")
    expect(page.locator("#run-blocks tr")).to_have_count(4)  # extract, load, check, announce
    page.screenshot(path=tmp_path / "backfill.png", full_page=True)


def test_create_with_preview_then_see_it_in_the_list(tab: Tab, server: Server) -> None:
    page = tab.page
    sign_in(page, server)
    open_form(page)
    page.get_by_label("Name").fill("Feb <img src=x onerror=alert(1)>")
    page.get_by_label("Start (first interval, inclusive)").fill("2024-02-03")
    page.get_by_label("End (last interval, inclusive)").fill("2024-02-01")
    page.locator("#f-variables").fill('{"currency": ')
    page.get_by_role("button", name="Preview").click()
    # client-side: the JSON is checked before anything is sent
    expect(page.locator("#err-variables")).to_contain_text("Variables is not valid JSON")
    expect(page.locator("#f-variables")).to_have_attribute("aria-invalid", "true")

    page.locator("#f-variables").fill('{"currency": "USD"}')
    page.get_by_role("button", name="Preview").click()
    # server-side: the API's message as a sentence with the form's labels, next to the field it names
    expect(page.locator("#new-error")).to_contain_text("Preview refused: End must not be before Start (")
    expect(page.locator("#new-error")).not_to_contain_text("UNPROCESSABLE")
    expect(page.locator("#err-range_end")).to_contain_text("End must not be before Start")
    expect(page.get_by_role("button", name="Start backfill")).to_be_disabled()

    page.get_by_label("Start (first interval, inclusive)").fill("2024-02-01")
    page.get_by_label("End (last interval, inclusive)").fill("2024-02-03")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-summary")).to_contain_text("3 intervals would run")
    expect(page.locator("#preview-intervals li")).to_have_text(["2024-02-03", "2024-02-02", "2024-02-01"])
    expect(page.locator("#new-error")).to_be_hidden()
    backfill_id = start_from_preview(page)

    name = page.locator("#detail-name")
    expect(name).to_have_text("Feb <img src=x onerror=alert(1)>")  # text, never markup
    assert page.locator("#view-detail img").count() == 0
    expect(page.locator("#count-total")).to_have_text("3")
    expect(page.locator("#grid .cell")).to_have_count(3)

    page.get_by_role("link", name="All backfills").first.click()
    page.get_by_label("All").check()
    row = page.locator(f'#backfill-rows tr[data-backfill-id="{backfill_id}"]')
    expect(row).to_contain_text("Feb <img src=x onerror=alert(1)>")
    expect(row.locator(".progress")).to_be_visible()
    expect(row.locator(".badge").first).to_have_text(re.compile(r"SCHEDULED|RUNNING|COMPLETED"))
    assert page.locator("#backfill-rows img").count() == 0
    body = server.api("GET", f"/backfills/{backfill_id}").json()["data"]
    assert body["variables"] == {"currency": "USD"}
    assert (body["range_start_date"], body["range_end_date"]) == ("2024-02-01", "2024-02-03")


def test_pause_resume_and_cancel(tab: Tab, server: Server, tmp_path: Path) -> None:
    page = tab.page
    sign_in(page, server)
    open_form(page)
    fill_range(page, "2024-03-01T00:00", "2024-03-03T23:59", "minute")
    page.get_by_label("Max active runs").fill("1")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-summary")).to_contain_text("4,320 intervals would run")
    expect(page.locator("#preview-intervals li")).to_have_count(50)
    expect(page.locator("#preview-more")).to_have_text("…and 4,270 more.")
    start_from_preview(page)

    status = page.locator("#detail-status")
    pause = page.get_by_role("button", name="Pause", exact=True)
    resume = page.get_by_role("button", name="Resume", exact=True)
    expect(status).to_have_text(re.compile(r"SCHEDULED|RUNNING"))
    expect(page.locator("#count-total")).to_have_text("4,320")

    pause.click()
    expect(page.locator("#detail-paused")).to_be_visible()
    expect(pause).to_be_disabled()
    expect(resume).to_be_enabled()
    expect(page.locator("#metric-eta")).to_have_text("paused")
    resume.click()
    expect(page.locator("#detail-paused")).to_be_hidden()
    expect(pause).to_be_enabled()
    expect(page.locator('#grid [data-status="COMPLETED"]').first).to_be_visible()

    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(status).to_have_text("CANCELLED")
    for name in ("Pause", "Resume", "Retry failed", "Cancel"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    expect(page.locator("#action-error")).to_be_hidden()
    expect(page.locator("#grid-note")).to_contain_text("never queued: the backfill is CANCELLED")
    page.screenshot(path=tmp_path / "cancelled.png", full_page=True)


def test_a_refused_action_shows_the_api_message(tab: Tab, server: Server) -> None:
    backfill_id = create_backfill(
        server,
        name="raced",
        range_start="2024-04-01T00:00",
        range_end="2024-04-02T23:59",
        interval_type="minute",
        max_active_runs=1,
    )
    page = tab.page
    sign_in(page, server)
    page.goto(f"/#/backfills/{backfill_id}")
    pause = page.get_by_role("button", name="Pause", exact=True)
    expect(pause).to_be_enabled()

    # Someone else cancels it between the page's last refresh and the click.
    def cancel_first(route: Route) -> None:
        if route.request.method == "PATCH":
            cancelled = server.api("PATCH", f"/backfills/{backfill_id}", json={"status": "CANCELLED"})
            assert cancelled.status_code == 200, cancelled.text
        route.continue_()

    page.route(re.compile(rf"/v1/teams/\d+/backfills/{backfill_id}$"), cancel_first)
    pause.click()
    error = page.locator("#action-error")
    expect(error).to_contain_text("Could not pause the backfill: The backfill is CANCELLED, a final status")
    expect(error).not_to_contain_text("422")
    expect(page.locator("#detail-status")).to_have_text("CANCELLED")
    expect(pause).to_be_disabled()


def test_failed_intervals_show_their_error_and_retry_requeues_them(tab: Tab, server: Server) -> None:
    backfill_id = create_backfill(
        server,
        name="broken",
        range_start="2024-05-01",
        range_end="2024-05-02",
        variables={"orders_file": "missing.csv"},  # extract fails: no such file
        retries=0,
    )
    page = tab.page
    sign_in(page, server)
    page.goto(f"/#/backfills/{backfill_id}")
    expect(page.locator("#detail-status")).to_have_text("FAILED", timeout=30_000)
    failed = page.locator('#grid [data-status="FAILED"]')
    expect(failed).to_have_count(2)
    expect(page.locator("#error-report li")).to_have_count(2)
    expect(page.locator("#error-report")).to_contain_text("missing.csv")

    page.get_by_role("button", name="2024-05-02: FAILED").click()
    expect(page.locator("#run-error")).to_contain_text("FileNotFoundError")
    expect(page.locator("#run-blocks")).to_contain_text("extract")

    retry = page.get_by_role("button", name="Retry failed")
    expect(retry).to_be_enabled()
    retry.click()
    # both intervals ran again (a second attempt each) and failed again
    expect(page.locator('#grid [data-status="FAILED"][aria-label$="attempt 2"]')).to_have_count(2, timeout=30_000)
    expect(page.locator("#detail-status")).to_have_text("FAILED")
    expect(page.locator("#action-error")).to_be_hidden()


def test_rerun_chosen_failed_intervals_and_one_from_its_panel(tab: Tab, server: Server) -> None:
    backfill_id = create_backfill(
        server,
        name="rerun me",
        range_start="2024-06-01",
        range_end="2024-06-03",
        variables={"orders_file": "missing.csv"},
        retries=0,
    )
    page = tab.page
    sign_in(page, server)
    page.goto(f"/#/backfills/{backfill_id}")
    expect(page.locator("#detail-status")).to_have_text("FAILED", timeout=30_000)
    expect(page.locator('#grid [data-status="FAILED"]')).to_have_count(3)

    # choose two failed intervals with Ctrl-click, re-run them: new attempts of those two only
    page.get_by_role("button", name="2024-06-01: FAILED").click(modifiers=["Control"])
    page.get_by_role("button", name="2024-06-03: FAILED").click(modifiers=["Control"])
    expect(page.locator("#rerun-count")).to_have_text("2 failed intervals selected")
    expect(page.locator("#run-panel")).to_be_hidden()  # choosing does not open the panel
    page.get_by_role("button", name="Re-run 2 intervals").click()
    expect(page.locator('#grid [aria-label$="attempt 2"]')).to_have_count(2, timeout=30_000)
    expect(page.locator("#detail-status")).to_have_text("FAILED", timeout=30_000)
    expect(page.get_by_role("button", name="2024-06-02: FAILED")).to_be_visible()  # not chosen: attempt 1

    # one interval from its panel, which shows the pipeline version it ran
    page.get_by_role("button", name="2024-06-02: FAILED").click()
    expect(page.locator("#run-details")).to_contain_text("Pipeline version")
    page.get_by_role("button", name="Re-run this interval").click()
    expect(page.get_by_role("button", name="2024-06-02: FAILED, attempt 2")).to_be_visible(timeout=30_000)
    expect(page.locator("#rerun-error")).to_be_hidden()
    expect(page.locator("#run-panel-error")).to_be_hidden()
