"""The 404 page keeps the menu and a way back; the favicon is there; the 500 page needs no database."""

import pytest
from django.template.loader import render_to_string

from annotation.models import Role
from tests.browser.site import site_build

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_missing_page_has_the_menu_and_a_way_back_and_no_request_fails(live_server, page, login):
    site = site_build()
    login(page, site.users[Role.LABELER].username)
    failed = []
    page.on("response", lambda response: response.status >= 400 and failed.append(response.url))
    response = page.goto(f"{live_server.url}/projects/{site.project.pk}/no-such-page/")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Page not found"
    assert page.locator("#main-menu").get_by_role("link", name="My work").count() == 1
    assert page.get_by_role("button", name="Log out").count() == 1
    assert page.evaluate("fetch('/favicon.ico').then(r => r.status + ' ' + r.headers.get('content-type'))") \
        == "200 image/x-icon"
    page.locator("main").get_by_role("link", name="My projects").click()
    page.wait_for_url(f"{live_server.url}/")
    assert failed == [response.url]  # the page itself; the favicon and the stylesheets were found


def test_the_server_error_page_renders_without_touching_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        html = render_to_string("500.html")
    assert "Something went wrong" in html and 'href="/"' in html
