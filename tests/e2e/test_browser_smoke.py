"""The browser harness itself: Debian's Chromium reaches the real server."""

import pytest

from tests.e2e.conftest import save_screenshot

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_db")]


def test_login_page_renders_in_chromium(page) -> None:
    response = page.goto("/accounts/login/")
    assert response.status == 200, page.content()[:2000]
    page.locator("input[name=login]").wait_for(state="visible")
    assert save_screenshot(page, "login").stat().st_size > 1000
