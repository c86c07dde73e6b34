"""The ranking page in headless Chromium: keyboard, drag and drop, ties, flags, submit, and no script runs."""

import json

import pytest

from ranking.models import Ranking
from ranking.services.tasks import ResponseSpec, ranking_task_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _task(project, answers, context="Which answer is best?"):
    return ranking_task_create(
        project=project, context=[{"role": "user", "content": context}], responses=[ResponseSpec(a, "m") for a in answers]
    )


def _config(page) -> dict:
    return json.loads(page.locator("#ranking-config").text_content())


def _groups(page) -> list[list[str]]:
    """The ranking board as answer labels, best first."""
    return page.eval_on_selector_all(
        "#rank-groups li.rank-group",
        "rows => rows.map(r => [...r.querySelectorAll('.chip')].map(c => c.textContent.replace('Answer ', '')))",
    )


def test_labeler_ranks_with_keyboard_and_drag_and_drop_ties_flags_and_lands_on_the_next_task(
    live_server, page, login, project, make_member
):
    project.rankings_per_task = 1
    project.save()
    _task(project, ["**Alpha** answer", "Bravo answer", "Charlie answer", "Delta answer"])
    _task(project, ["Second task one", "Second task two"], context="The next question")
    labeler = make_member(project)
    login(page, labeler.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/rank/")
    first_task = _config(page)["taskId"]
    # label shown on the page -> response id (the order is shuffled for this labeler)
    ids = {card.get_attribute("data-label"): int(card.get_attribute("data-response-id"))
           for card in page.locator("article.answer").all()}
    assert sorted(ids) == ["1", "2", "3", "4"]

    # keyboard: 3, 1, 4 go to the bottom in turn; ↑ lifts 4 above 1
    page.keyboard.press("3")
    page.keyboard.press("1")
    page.keyboard.press("4")
    assert _groups(page) == [["3"], ["1"], ["4"]]
    page.keyboard.press("ArrowUp")
    assert _groups(page) == [["3"], ["4"], ["1"]]

    # drag and drop: answer 2 from the pool onto answer 1's rank -> a tie
    page.locator(f'#rank-pool .chip[data-response-id="{ids["2"]}"]').drag_to(
        page.locator('#rank-groups li.rank-group[data-index="2"]')
    )
    assert _groups(page) == [["3"], ["4"], ["1", "2"]]
    # drag answer 4 into the gap above the first rank: it becomes the best
    page.locator(f'#rank-groups .chip[data-response-id="{ids["4"]}"]').drag_to(
        page.locator('#rank-groups li.rank-gap[data-position="0"]')
    )
    assert _groups(page) == [["4"], ["3"], ["1", "2"]]

    # keyboard: pick 2, ↓ takes it out of the tie, T ties it with the one above again
    page.keyboard.press("2")
    page.keyboard.press("ArrowDown")
    assert _groups(page) == [["4"], ["3"], ["1"], ["2"]]
    page.keyboard.press("t")
    assert _groups(page) == [["4"], ["3"], ["1", "2"]]
    assert page.locator(f"#answer-{ids['1']} [data-rank-badge]").inner_text() == "Rank 3 (tie)"

    # flag answer 4 as a hallucination, score answer 3 with 6
    card4 = page.locator(f"#answer-{ids['4']}")
    card4.locator("details.flags summary").click()
    card4.locator('input[value="hallucination"]').check()
    page.locator(f"#answer-{ids['3']}").locator('input[data-score-for][value="6"]').check()

    with page.expect_navigation():
        page.click("#submit-ranking")
    page.wait_for_selector("#ranking-config", state="attached")
    assert _config(page)["taskId"] != first_task
    assert "The next question" in page.locator(".conversation").inner_text()

    ranking = Ranking.objects.get(task_id=first_task)
    assert ranking.labeler == labeler
    assert ranking.order == [[ids["4"]], [ids["3"]], sorted([ids["1"], ids["2"]])]
    assert ranking.flags == {str(ids["4"]): ["hallucination"]}
    assert ranking.scores == {str(ids["3"]): 6}
    assert ranking.time_spent_ms > 0 and not ranking.all_bad
    assert page.js_errors == []


def test_submitting_with_answers_unranked_says_which(live_server, page, login, project, make_member):
    _task(project, ["one", "two", "three"])
    login(page, make_member(project).username)
    page.goto(f"{live_server.url}/projects/{project.pk}/rank/")
    page.keyboard.press("2")
    page.click("#submit-ranking")
    assert "still unranked" in page.locator("#rank-status").inner_text()
    assert not Ranking.objects.exists()
    page.keyboard.press("1")
    page.keyboard.press("3")
    assert page.locator("#rank-status").inner_text() == ""  # every answer ranked: the message is gone
    page.check("#all-bad")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    assert page.locator("#no-task").is_visible()
    assert Ranking.objects.get().all_bad
    assert page.js_errors == []


def test_skip_goes_to_the_next_task(live_server, page, login, project, make_member):
    first = _task(project, ["a", "b"], context="First question")
    _task(project, ["c", "d"], context="Second question")
    labeler = make_member(project)
    login(page, labeler.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/rank/")
    assert "First question" in page.locator(".conversation").inner_text()
    with page.expect_navigation():
        page.click("#skip-task")
    assert "Second question" in page.locator(".conversation").inner_text()
    assert first.skips.filter(labeler=labeler).exists()


def test_an_answer_holding_a_script_payload_runs_nothing(live_server, page, login, project, make_member):
    payloads = [
        "<script>window.__pwned = 'script'</script>",
        '<img src="x" onerror="window.__pwned = \'img\'">',
        "[click me](javascript:window.__pwned='link')",
        '<svg onload="window.__pwned = \'svg\'"></svg>',
    ]
    _task(project, payloads, context="<script>window.__pwned = 'context'</script> hello")
    login(page, make_member(project).username)
    page.goto(f"{live_server.url}/projects/{project.pk}/rank/")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    answers = page.locator(".answers").inner_text()
    assert "<script>window.__pwned = 'script'</script>" in answers  # shown as text
    assert page.locator(".answers img, .answers svg, .answers script, .conversation script").count() == 0
    assert page.locator('.answers a[href^="javascript"]').count() == 0
    # clicking the would-be link does nothing either
    page.locator(".answers").get_by_text("click me").click()
    assert page.evaluate("window.__pwned") is None
    assert page.js_errors == []


def test_a_task_taken_by_others_meanwhile_says_so_and_offers_the_next(live_server, page, login, project, make_member):
    from ranking.models import Lease

    project.rankings_per_task = 1
    project.save()
    task = _task(project, ["one", "two"])
    labeler = make_member(project)
    login(page, labeler.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/rank/")
    # the lease runs out and another labeler ranks the task before this one submits
    Lease.objects.filter(labeler=labeler).delete()
    from ranking.services.rankings import ranking_submit

    ranking_submit(task=task, labeler=make_member(project), order=[[r.pk] for r in task.responses.all()])
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.click("#submit-ranking")
    page.wait_for_selector("#next-task")
    assert "already has the rankings it needs" in page.locator("#rank-status").inner_text()
    page.click("#next-task")
    assert page.locator("#no-task").is_visible()
    assert page.js_errors == []
