"""A pipeline whose files stop loading, in a real browser against a real ``backfill serve``
of a copy of the example project: the pipelines page and the pipeline's page say so,
naming the file and quoting the server's load error (its last good version keeps running)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.test_web import REPO, Server, Tab, serving, sign_in
from tests.engine.procs import wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's own server: a project it may break."""
    cwd = tmp_path_factory.mktemp("serve-broken")
    shutil.copytree(REPO / "examples" / "shop", cwd / "shop")
    with serving(cwd, cwd / "shop") as running:
        yield running


def load_error(server: Server) -> str | None:
    transfers = server.api("GET", "/transfers").json()["data"]
    error: str | None = next(t["load_error"] for t in transfers if t["uuid"] == "daily_sales")
    return error


def shows_load_error(page: Page, server: Server, file_name: str) -> None:
    """Once the server reports it, both pages show the load error, naming the file."""
    wait_for(lambda: load_error(server) is not None and file_name in (load_error(server) or ""), timeout=30)
    error = load_error(server) or ""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pipelines").click()  # or already there
    card = page.locator('[data-pipeline="daily_sales"]')
    banner = card.locator(".load-error")
    expect(banner).to_contain_text("The latest version of this pipeline does not load, the last good one (")
    expect(banner).to_contain_text(file_name)
    expect(banner).to_contain_text(error)
    card.get_by_role("link", name="Coverage").click()
    expect(page.locator("#cov-load-error")).to_contain_text(file_name)
    expect(page.locator("#cov-load-error")).to_contain_text(error)


def test_a_broken_pipeline_yaml_then_a_broken_block_show_their_load_error(tab: Tab, server: Server) -> None:
    page = tab.page
    sign_in(page, server)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pipelines").click()
    expect(page.locator('[data-pipeline="daily_sales"] svg.dag')).to_be_visible()
    expect(page.locator(".load-error")).to_have_count(0)

    folder = server.cwd / "shop" / "pipelines" / "daily_sales"
    good_yaml = (folder / "pipeline.yaml").read_text()
    (folder / "pipeline.yaml").write_text(good_yaml + "\nblocks: [this is not closed\n")
    shows_load_error(page, server, "pipeline.yaml")

    page.get_by_role("link", name="All pipelines").click()  # the open page follows the project
    (folder / "pipeline.yaml").write_text(good_yaml)
    (folder / "extract.py").write_text("def broken(:\n    pass\n")
    shows_load_error(page, server, "extract.py")

    page.get_by_role("link", name="All pipelines").click()
    expect(page.locator('[data-pipeline="daily_sales"] .load-error')).to_contain_text("extract.py")
    # fixed again: the banner goes away
    shutil.copy(REPO / "examples" / "shop" / "pipelines" / "daily_sales" / "extract.py", folder / "extract.py")
    expect(page.locator(".load-error")).to_have_count(0, timeout=30_000)
