import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_labeler_logs_in_sees_demo_project_and_its_guidelines(live_server, page, login, monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "browser-demo-pass")
    call_command("seed_demo")
    login(page, "labeler1", "browser-demo-pass")
    page.get_by_role("link", name="Demo assistant").click()
    page.wait_for_selector("#guidelines")
    assert page.locator("h1").inner_text() == "Demo assistant"
    guidelines = page.locator("#guidelines")
    assert "Demo guidelines" in guidelines.inner_text()
    assert guidelines.locator("strong", has_text="user's").count() == 1  # Markdown rendered
    assert page.js_errors == []


def test_wrong_password_shows_an_error(live_server, page, django_user_model):
    django_user_model.objects.create_user("someone", password="right-password-1")
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "someone")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "Wrong username or password."
