"""Every page a labeler, reviewer, manager or admin can reach runs under the strict CSP without a violation."""

import re

import pytest

from annotation.models import Role
from tests.browser.site import crawl, site_build

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Playwright's init scripts run outside the page's CSP: the listener sees every violation, with its source.
LISTEN_FOR_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || location.pathname}:${event.lineNumber}`);
});
"""


def _csp_watched_page(browser):
    context = browser.new_context()
    context.add_init_script(LISTEN_FOR_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.problems = []
    page.on("console", lambda message: "Content Security Policy" in message.text
            and page.problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda exc: page.problems.append(f"error: {exc}"))
    return page


def _check(page, url):
    page.wait_for_timeout(150)  # a page's scripts build charts and lists after load
    for violation in page.evaluate("window.__cspViolations"):
        page.problems.append(f"{url}: {violation}")


@pytest.mark.parametrize("role", ["anonymous", Role.LABELER, Role.REVIEWER, Role.MANAGER, "admin"])
def test_every_page_a_role_reaches_has_the_policy_and_no_violation(live_server, browser, login, role):
    site = site_build()
    page = _csp_watched_page(browser)
    response = page.goto(f"{live_server.url}/login/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    start = ["/login/", "/no-such-page/"]
    if role != "anonymous":
        login(page, site.users[role].username)
        start = ["/", "/no-such-page/", "/api/docs/"]
    if role in (Role.MANAGER, "admin"):
        start.append(site.run_url)
    if role == "admin":
        start.append("/admin/")
    opened = crawl(page, live_server.url, start, visit=_check, limit=250 if role == "admin" else 80)

    assert not page.problems, "\n".join(page.problems)
    if role == "anonymous":
        assert any("password" in url for url in opened)  # the login page links to the reset form
    else:
        expected = {"/", "/my-work/"} | ({"/review/"} if role == Role.REVIEWER else set())
        assert expected <= set(opened)
        assert any(url.startswith(f"/projects/{site.project.pk}/rank") for url in opened)
    if role == Role.MANAGER:  # pages with live parts: the run's charts, an import's progress bar
        assert site.run_url in opened
        assert any(re.match(rf"^/projects/{site.project.pk}/ranking/import/\d+/$", url) for url in opened)
        assert any(re.match(rf"^/projects/{site.project.pk}/data/imports/\d+/$", url) for url in opened)
    if role == "admin":
        assert sum(url.startswith("/admin/") and url.endswith("/add/") for url in opened) >= 10
        assert sum(bool(re.search(r"^/admin/.+/\d+/change/", url)) for url in opened) >= 5
    page.context.close()
