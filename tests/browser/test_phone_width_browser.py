"""At 390 px (a phone) no page scrolls sideways, and the menu folds behind a Menu button that opens it."""

import os
import re
from pathlib import Path

import pytest

from annotation.models import Role
from tests.browser.site import crawl, site_build

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("RLHF_SCREENSHOT_DIR")  # set it to keep a picture of every page


def _overflow(page) -> dict:
    """The page's width beyond the viewport, and the widest elements that stick out."""
    return page.evaluate("""() => {
      const width = document.documentElement.clientWidth;
      const wide = [...document.querySelectorAll("body *")]
        .filter((node) => node.getBoundingClientRect().right > width + 1 && !node.closest("[data-scrolls]"))
        .filter((node) => { for (let p = node.parentElement; p; p = p.parentElement) {
            const style = getComputedStyle(p);
            if (style.overflowX === "auto" || style.overflowX === "scroll" || style.overflowX === "hidden") return false;
          } return true; })
        .slice(0, 3).map((node) => `${node.tagName.toLowerCase()}.${node.className}`);
      return {extra: document.documentElement.scrollWidth - width, wide};
    }""")


@pytest.mark.parametrize("role", [Role.LABELER, Role.MANAGER])
def test_no_page_scrolls_sideways_on_a_phone_and_the_menu_opens(live_server, browser, login, role):
    site = site_build()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    login(page, site.users[role].username)
    problems = []

    def visit(page, url):
        overflow = _overflow(page)
        if overflow["extra"] > 0:
            problems.append(f"{url}: {overflow['extra']} px too wide ({', '.join(overflow['wide'])})")
        if SHOTS:
            name = re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-") or "home"
            page.screenshot(path=str(Path(SHOTS) / f"390-{role}-{name}.png"), full_page=True)

    start = ["/", "/no-such-page/"] + ([site.run_url] if role == Role.MANAGER else [])
    crawl(page, live_server.url, start, visit=visit, limit=60)
    assert problems == []

    # the menu: folded behind a button; opened, every item shows inside the screen and can be tapped
    page.goto(f"{live_server.url}/projects/{site.project.pk}/")
    menu = page.locator("#main-menu")
    assert menu.is_hidden()
    page.get_by_role("button", name="Menu").tap()
    assert page.get_by_role("button", name="Menu").get_attribute("aria-expanded") == "true"
    items = menu.locator("a, button")
    assert items.count() >= 5
    for index in range(items.count()):
        box = items.nth(index).bounding_box()
        assert items.nth(index).is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.get_by_role("link", name="My work").tap()
    page.wait_for_url("**/my-work/")
    page.get_by_role("button", name="Menu").tap()
    page.get_by_role("button", name="Log out").tap()
    page.wait_for_url("**/login/**")
    context.close()


def test_the_desktop_menu_shows_every_item_without_a_button_and_no_page_scrolls_sideways(live_server, page, login):
    site = site_build()
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, site.users[Role.MANAGER].username)
    page.goto(f"{live_server.url}/projects/{site.project.pk}/")
    assert page.get_by_role("button", name="Menu").is_hidden()
    for name in ("My projects", "My work", "Rank answers", "Training", "API"):
        assert page.locator("#main-menu").get_by_role("link", name=name).is_visible()
    assert page.get_by_role("button", name="Log out").is_visible()

    problems = []

    def visit(page, url):
        if _overflow(page)["extra"] > 0:
            problems.append(url)
        if SHOTS:
            name = re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-") or "home"
            page.screenshot(path=str(Path(SHOTS) / f"1280-manager-{name}.png"), full_page=True)

    crawl(page, live_server.url, ["/", site.run_url], visit=visit, limit=60)
    assert problems == []
