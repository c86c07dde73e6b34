"""Account pages in a real browser: change password, reset a forgotten one, API tokens (issue 12.5).

Screenshots of each page at 1280 and 390 px go to RLHF_SCREENSHOT_DIR when it is set.
"""

import os
import re
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation.services.api_tokens import api_token_create
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "a-fresh-password-2026"


def token_works(secret: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    status = client.get("/api/projects/").status_code
    assert status in (200, 401)
    return status == 200


def shoot(page, name: str) -> None:
    """Screenshot the page at 1280 and 390 px wide; its content must fit both."""
    folder = os.environ.get("RLHF_SCREENSHOT_DIR")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)
        # the page's own content never scrolls sideways (the top bar is base.html's business)
        main_overflow = page.evaluate("(m => m.scrollWidth - m.clientWidth)(document.querySelector('main'))")
        assert main_overflow <= 0, (name, width, main_overflow)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_changing_the_password_rejects_the_old_api_token(live_server, page, login):
    user = UserFactory()
    _, secret = api_token_create(user=user, name="laptop")
    assert token_works(secret)
    login(page, user.username)
    page.goto(f"{live_server.url}/account/tokens/")
    page.get_by_role("link", name="Change password").click()
    page.wait_for_url("**/account/password/")
    shoot(page, "password-change")
    page.fill("input[name=old_password]", PASSWORD)
    page.fill("input[name=new_password1]", NEW_PASSWORD)
    page.fill("input[name=new_password2]", NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url("**/account/password/done/")
    assert "API tokens are revoked" in page.get_by_role("status").inner_text()
    shoot(page, "password-change-done")
    assert not token_works(secret)
    page.goto(f"{live_server.url}/account/tokens/")
    assert page.locator("#tokens tr", has_text="laptop").locator(".badge").inner_text() == "Password changed"
    assert page.js_errors == []


def test_a_forgotten_password_is_reset_through_the_emailed_link(live_server, page, mailoutbox):
    user = UserFactory(email="ada@example.org")
    _, secret = api_token_create(user=user, name="cron")
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url("**/password-reset/")
    shoot(page, "password-reset")
    page.fill("input[name=email]", "ada@example.org")
    page.get_by_role("button", name="Send the link").click()
    page.wait_for_url("**/password-reset/sent/")
    shoot(page, "password-reset-sent")
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ada@example.org"] and mail.subject == "Reset your rlhf-studio password"
    link = re.search(r"https?://\S+/reset/\S+/", mail.body).group(0)
    page.goto(link)
    page.wait_for_url("**/set-password/")
    shoot(page, "password-reset-confirm")
    page.fill("input[name=new_password1]", NEW_PASSWORD)
    page.fill("input[name=new_password2]", NEW_PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url("**/reset/done/")
    shoot(page, "password-reset-complete")
    assert not token_works(secret)
    page.goto(link)  # a used link does not work twice
    assert page.locator("h1").inner_text() == "This link does not work"
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    assert page.js_errors == []


def test_a_person_creates_a_token_on_the_tokens_page_then_revokes_it(live_server, page, login):
    user = UserFactory()
    login(page, user.username)
    page.locator("header a.who").click()  # the account link in the top bar
    page.wait_for_url("**/account/tokens/")
    assert page.locator("h1").inner_text() == "API tokens"
    page.fill("input[name=name]", "training laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-secret").input_value()
    assert secret.startswith("rlhf_")
    assert token_works(secret)
    row = page.locator("#tokens tr", has_text="training laptop")
    assert row.locator(".badge").inner_text() == "Active"
    shoot(page, "api-tokens")
    page.goto(f"{live_server.url}/account/tokens/")
    assert page.locator("#new-token").count() == 0  # the secret is shown once
    assert secret not in page.content()
    page.get_by_role("button", name="Revoke training laptop").click()
    page.wait_for_url("**/account/tokens/")
    assert "no longer works" in page.locator(".messages").inner_text()
    assert row.locator(".badge").inner_text() == "Revoked by its owner"
    assert row.get_by_role("button").count() == 0
    assert not token_works(secret)
    shoot(page, "api-tokens-revoked")
    assert page.js_errors == []


def test_the_login_page_says_how_many_tries_are_left_and_when_to_come_back(live_server, page, settings):
    user = UserFactory()
    for attempt in range(settings.LOGIN_FAILURE_LIMIT):
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        if attempt == 0:
            assert page.locator("#tries-left").inner_text().startswith(f"{settings.LOGIN_FAILURE_LIMIT - 1} tries left")
            shoot(page, "login-tries-left")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Too many failed logins"
    assert "Try again in 5 minutes" in page.get_by_role("alert").inner_text()
    shoot(page, "login-blocked")
