"""Login throttling (issue 11) and one canonical username for counting and authentication (issue 12.4).

The login page and the token endpoint share the counters, so each rule is checked on both.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

# Each spelling below is "labeler3" once stripped, NFKC-normalised and case-folded.
SPELLINGS = [" labeler3", "labeler3 ", "ｌａｂｅｌｅｒ３", "LABELER3", "Labeler3", "\tlabeler3\n", "ＬＡＢＥＬＥＲ３"]


def page_login(username: str, password: str, address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post("/login/", {"username": username, "password": password})


def token_login(username: str, password: str, address: str = "10.0.0.1"):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )


LOGINS = {"page": page_login, "token": token_login}
OK = {"page": 302, "token": 200}
REFUSED = {"page": 200, "token": 400}


@pytest.mark.parametrize("via", LOGINS)
def test_one_persons_typos_do_not_lock_out_others_behind_the_same_address(via, settings):
    clumsy, colleague = UserFactory(), UserFactory()
    login = LOGINS[via]
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert login(clumsy.username, "typo").status_code == REFUSED[via]
    assert login(clumsy.username, PASSWORD).status_code == 429
    assert login(colleague.username, PASSWORD).status_code == OK[via]


@pytest.mark.parametrize("via", LOGINS)
def test_an_address_is_locked_only_at_its_own_much_higher_count(via, settings):
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 12
    login = LOGINS[via]
    victim = UserFactory()
    for index in range(settings.LOGIN_ADDRESS_FAILURE_LIMIT):  # a spray: a few guesses on many names
        assert login(f"someone{index}", "guess").status_code == REFUSED[via]
    blocked = login(victim.username, PASSWORD)
    assert blocked.status_code == 429
    assert "network address" in blocked.content.decode()
    assert login(victim.username, PASSWORD, address="10.0.0.2").status_code == OK[via]


def test_settings_lock_an_address_much_later_than_a_username(settings):
    assert settings.LOGIN_ADDRESS_FAILURE_LIMIT >= 10 * settings.LOGIN_FAILURE_LIMIT


def test_a_failed_try_on_the_api_says_how_many_are_left(settings):
    user = UserFactory()
    lefts = [token_login(user.username, "bad").json()["tries_left"] for _ in range(settings.LOGIN_FAILURE_LIMIT)]
    assert lefts == list(range(settings.LOGIN_FAILURE_LIMIT - 1, -1, -1))


def test_a_failed_try_on_the_page_says_how_many_are_left(settings):
    user = UserFactory()
    first = page_login(user.username, "bad").content.decode()
    assert f"{settings.LOGIN_FAILURE_LIMIT - 1} tries left" in first
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 3):
        page_login(user.username, "bad")
    assert "1 try left" in page_login(user.username, "bad").content.decode()
    assert "now locked" in page_login(user.username, "bad").content.decode()


@pytest.mark.parametrize("via", LOGINS)
def test_a_locked_username_answers_429_with_retry_after(via, settings):
    user = UserFactory()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        LOGINS[via](user.username, "bad")
    blocked = LOGINS[via](user.username, PASSWORD)
    assert blocked.status_code == 429
    assert 0 < int(blocked["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    assert "Try again in 5 minutes" in blocked.content.decode()


@pytest.mark.parametrize("via", LOGINS)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_another_spelling_of_a_locked_username_is_locked_too(via, spelling, settings):
    UserFactory(username="labeler3")
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        LOGINS[via]("labeler3", "bad")
    # from another address: the username's own lock must hold, not the address's
    assert LOGINS[via](spelling, PASSWORD, address="10.9.9.9").status_code == 429


@pytest.mark.parametrize("via", LOGINS)
def test_guesses_spread_over_spellings_share_one_counter(via, settings):
    UserFactory(username="labeler3")
    # 35 guesses, each from its own address, as a spread-out attacker would
    answers = [LOGINS[via](spelling, f"guess{round_}", address=f"10.1.{round_}.{index}").status_code
               for round_ in range(5) for index, spelling in enumerate(SPELLINGS)]
    assert answers[: settings.LOGIN_FAILURE_LIMIT] == [REFUSED[via]] * settings.LOGIN_FAILURE_LIMIT
    assert set(answers[settings.LOGIN_FAILURE_LIMIT:]) == {429}


@pytest.mark.parametrize("via", LOGINS)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_any_spelling_with_the_right_password_logs_in_as_the_same_person(via, spelling):
    user = UserFactory(username="labeler3")
    client = Client() if via == "page" else APIClient()
    if via == "page":
        assert client.post("/login/", {"username": spelling, "password": PASSWORD}).status_code == 302
        assert client.get("/").context["user"] == user
    else:
        token = client.post("/api/auth/token/", {"username": spelling, "password": PASSWORD}).json()["token"]
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        assert client.get("/api/projects/").status_code == 200
        assert user.api_tokens.count() == 1


def test_a_success_clears_the_canonical_counter(settings):
    UserFactory(username="labeler3")
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        token_login("LABELER3", "bad")
    assert token_login("ｌａｂｅｌｅｒ３", PASSWORD).status_code == 200
    assert token_login("labeler3", "bad").json()["tries_left"] == settings.LOGIN_FAILURE_LIMIT - 1


def test_an_existing_account_stored_with_capitals_still_logs_in():
    legacy = get_user_model().objects.create(username="Alice")  # stored before usernames were folded
    legacy.set_password(PASSWORD)
    legacy.save()
    for spelling in ["Alice", "alice", " ALICE", "ａｌｉｃｅ"]:
        assert token_login(spelling, PASSWORD).status_code == 200, spelling


def test_two_legacy_accounts_differing_only_in_case_never_swap():
    users = get_user_model().objects
    canonical = UserFactory(username="bob")
    capital = users.create(username="Bob")
    capital.set_password("another-password-9")
    capital.save()
    assert token_login("BOB", PASSWORD).status_code == 200  # the canonical account
    assert canonical.api_tokens.count() == 1
    # "Bob" can't tell the two apart: the one stored in canonical form is checked, Bob's password fails
    assert token_login("Bob", "another-password-9").status_code == 400


def test_an_unknown_username_is_refused_like_a_wrong_password():
    response = token_login("nobody-here", "whatever")
    assert response.status_code == 400
    assert response.json()["detail"] == "Wrong username or password."


def test_admin_creates_users_under_their_canonical_name_and_refuses_a_second_spelling(client):
    admin_user = get_user_model().objects.create_superuser("root", "root@example.org", "root-password-123")
    client.force_login(admin_user)
    form = {"username": " ＮｅｗＬａｂｅｌｅｒ ", "password1": "a-long-password-42", "password2": "a-long-password-42",
            "usable_password": "true"}
    assert client.post("/admin/auth/user/add/", form).status_code == 302
    assert get_user_model().objects.filter(username="newlabeler").exists()
    again = client.post("/admin/auth/user/add/", {**form, "username": "NEWLABELER"})
    assert again.status_code == 200
    assert "already exists" in again.content.decode()
    assert token_login("NewLabeler", "a-long-password-42").status_code == 200


def test_password_reset_emails_to_one_address_are_limited_per_hour(mailoutbox):
    from annotation.login_throttle import PASSWORD_RESETS_PER_EMAIL

    UserFactory(email="ada@example.org")
    UserFactory(email="bo@example.org")
    client = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(PASSWORD_RESETS_PER_EMAIL):
        assert client.post("/password-reset/", {"email": "Ada@example.org"}).status_code == 302
    blocked = client.post("/password-reset/", {"email": "ada@example.org"})
    assert blocked.status_code == 429
    assert 0 < int(blocked["Retry-After"]) <= 3600
    assert "Too many password-reset emails" in blocked.content.decode()
    assert len(mailoutbox) == PASSWORD_RESETS_PER_EMAIL
    assert client.post("/password-reset/", {"email": "bo@example.org"}).status_code == 302
    assert len(mailoutbox) == PASSWORD_RESETS_PER_EMAIL + 1
