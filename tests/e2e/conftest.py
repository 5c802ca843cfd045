"""The browser tests' fixtures (a served example project, Chromium, a signed-out tab) for
every module here; they are defined with the page's first tests in test_web.py."""

from tests.e2e.test_web import browser, server, tab  # noqa: F401
