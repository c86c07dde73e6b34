"""API tokens (issue 12.5): stored hashed, expire, named and revoked by their owner, revoked when
the password changes; DRF's plain-text authtoken table is gone."""

import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import ApiToken
from annotation.services.api_tokens import api_token_create
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def token_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def obtain(username: str, **extra) -> dict:
    response = APIClient().post("/api/auth/token/", {"username": username, "password": PASSWORD, **extra})
    assert response.status_code == 200, response.content
    return response.json()


def test_only_the_hash_of_a_token_is_stored():
    user = UserFactory()
    secret = obtain(user.username)["token"]
    token = ApiToken.objects.get(user=user)
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(value) for value in ApiToken.objects.filter(pk=token.pk).values_list().get()]
    assert not any(secret in value for value in stored)
    assert secret.startswith(token.prefix) and len(secret) > len(token.prefix) + 30


def test_the_plain_text_authtoken_table_is_gone():
    assert "authtoken_token" not in connection.introspection.table_names()


def test_a_token_expires_after_the_configured_days(settings):
    user = UserFactory()
    answer = obtain(user.username, name="nightly export")
    token = ApiToken.objects.get(user=user)
    assert token.name == "nightly export"
    expected = timezone.now() + timedelta(days=settings.RLHF_API_TOKEN_DAYS)
    assert abs(token.expires_at - expected) < timedelta(minutes=1)
    assert answer["expires_at"].startswith(token.expires_at.date().isoformat())
    client = token_client(answer["token"])
    assert client.get("/api/projects/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = client.get("/api/projects/")
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


def test_a_password_change_revokes_every_token_of_that_user():
    user, other = UserFactory(), UserFactory()
    first, second = obtain(user.username)["token"], obtain(user.username)["token"]
    others = obtain(other.username)["token"]
    user.set_password("a-brand-new-password-7")
    user.save()  # as the admin, `changepassword` and the password pages do
    assert token_client(first).get("/api/projects/").status_code == 401
    assert token_client(second).get("/api/projects/").status_code == 401
    assert token_client(others).get("/api/projects/").status_code == 200
    assert set(user.api_tokens.values_list("revoked_reason", flat=True)) == {"password"}


def test_a_login_that_only_saves_the_user_keeps_the_tokens():
    user = UserFactory()
    secret = obtain(user.username)["token"]
    user.first_name = "Ada"
    user.save()
    assert Client().post("/login/", {"username": user.username, "password": PASSWORD}).status_code == 302
    assert token_client(secret).get("/api/projects/").status_code == 200


def test_api_logout_revokes_the_token_it_was_sent_with():
    user = UserFactory()
    first, second = obtain(user.username)["token"], obtain(user.username)["token"]
    assert token_client(first).post("/api/auth/token/revoke/").status_code == 204
    assert token_client(first).get("/api/projects/").status_code == 401
    assert token_client(second).get("/api/projects/").status_code == 200


def test_api_logout_with_a_session_asks_for_the_token():
    user = UserFactory()
    client = APIClient()
    client.force_login(user)
    assert client.post("/api/auth/token/revoke/").status_code == 400


def test_a_deactivated_users_token_is_refused():
    user = UserFactory()
    secret = obtain(user.username)["token"]
    user.is_active = False
    user.save()
    assert token_client(secret).get("/api/projects/").status_code == 401


def test_using_a_token_records_when_it_was_last_used():
    user = UserFactory()
    secret = obtain(user.username)["token"]
    assert ApiToken.objects.get(user=user).last_used_at is None
    token_client(secret).get("/api/projects/")
    assert ApiToken.objects.get(user=user).last_used_at is not None


def test_tokens_page_creates_a_named_token_and_shows_its_secret_once():
    user = UserFactory()
    client = Client()
    client.force_login(user)
    response = client.post("/account/tokens/", {"name": "training laptop"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    secret = response.context["secret"]
    assert secret in response.content.decode()
    assert token_client(secret).get("/api/projects/").status_code == 200
    listing = client.get("/account/tokens/").content.decode()
    assert "training laptop" in listing and secret not in listing


def test_tokens_page_lists_only_the_owners_tokens_and_revokes_them():
    user, other = UserFactory(), UserFactory()
    mine, my_secret = api_token_create(user=user, name="mine")
    theirs, their_secret = api_token_create(user=other, name="theirs")
    client = Client()
    client.force_login(user)
    listing = client.get("/account/tokens/").content.decode()
    assert "mine" in listing and "theirs" not in listing
    assert client.post(f"/account/tokens/{theirs.id}/revoke/").status_code == 404
    assert token_client(their_secret).get("/api/projects/").status_code == 200
    assert client.post(f"/account/tokens/{mine.id}/revoke/").status_code == 302
    assert token_client(my_secret).get("/api/projects/").status_code == 401
    mine.refresh_from_db()
    assert mine.revoked_reason == "owner"


def test_tokens_page_needs_login():
    assert Client().get("/account/tokens/").status_code == 302


def test_a_superuser_sees_tokens_in_admin_without_secrets_and_revokes_them():
    root = UserFactory(username="root-admin", is_staff=True, is_superuser=True)
    staff = UserFactory(username="staff-only", is_staff=True)
    owner = UserFactory()
    token, secret = api_token_create(user=owner, name="leaked laptop")
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/annotation/apitoken/").status_code == 403
    client.force_login(root)
    listing = client.get("/admin/annotation/apitoken/").content.decode()
    assert "leaked laptop" in listing and token.prefix in listing and secret not in listing
    response = client.post("/admin/annotation/apitoken/", {"action": "revoke_selected", "_selected_action": [token.pk]})
    assert response.status_code == 302
    assert token_client(secret).get("/api/projects/").status_code == 401
    token.refresh_from_db()
    assert token.revoked_reason == "admin"


def test_tokens_page_shows_fifty_tokens_a_page():
    user = UserFactory()
    for index in range(55):
        api_token_create(user=user, name=f"run {index}")
    client = Client()
    client.force_login(user)
    first = client.get("/account/tokens/")
    assert len(first.context["tokens"]) == 50 and "Page 1 of 2" in first.content.decode()
    assert len(client.get("/account/tokens/?page=2").context["tokens"]) == 5
