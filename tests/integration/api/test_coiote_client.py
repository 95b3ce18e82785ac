"""The vendor client python-coiote against the real server: three ways to authenticate,
the users and domains modules."""

from __future__ import annotations

import secrets

import pytest
from coiote.auth import Credentials, ServiceAccount
from coiote.client import Coiote
from coiote.v3.model.domains import Domain, DomainUpdateRequest
from coiote.v3.model.users import User, UserCreateRequest, UserPatchRequest


@pytest.fixture(scope="module")
def service_account(server, given_user):
    login = given_user(f"svc-owner-{secrets.token_hex(3)}", account_type="admin")
    with server.admin() as http:
        created = http.post(
            "/api/admin/service-accounts",
            json={"clientId": "python-coiote", "realm": "coiote", "login": login},
        )
    assert created.status_code == 201, created.text
    return ServiceAccount(
        realm="coiote", client_id="python-coiote", client_secret=created.json()["clientSecret"]
    )


@pytest.fixture(scope="module", params=["credentials", "service_account", "raw_token"])
def client(request, server):
    if request.param == "credentials":
        auth = Credentials(username="admin", password=server.admin_password)
    elif request.param == "service_account":
        auth = request.getfixturevalue("service_account")
    else:
        auth = server.admin_token
    coiote = Coiote(server.url, auth=auth)
    yield coiote
    coiote.session.close()


def test_users_module(client):
    tag = secrets.token_hex(3)
    login = f"pc-{tag}@example.com"
    response = client.users.create_one(
        UserCreateRequest(
            login=login,
            email=login,
            password="Client-Pa55word",
            domain="/root/",
            emailVerified=True,
            tosAccepted=True,
            roles=["Monitor"],
        )
    )
    assert response.status_code == 201, response.text
    user = client.users.get_one(login)
    assert isinstance(user, User)
    assert (user.login, user.domain, user.roles, user.active) == (
        login,
        "/root/",
        ["Monitor"],
        True,
    )
    assert user.password == ""
    assert login in client.users.find_many(username=f"pc-{tag}")
    assert client.users.find_many(email=login) == [login]
    assert login in client.users.find_many(domain="/root/", active_only=True)
    patched = client.users.update_one(login, UserPatchRequest(userEnabled=False, roles=[]))
    assert patched.status_code == 204, patched.text
    disabled = client.users.get_one(login)
    assert disabled.active is False and disabled.roles == ["Monitor"]
    assert login not in client.users.find_many(username=f"pc-{tag}", active_only=True)
    assert client.users.delete_one(login).status_code == 204
    with pytest.raises(ValueError, match="404"):
        client.users.get_one(login)


def test_domains_module(client):
    domain_id = f"/root/pc{secrets.token_hex(3)}/"
    result = client.domains.add_domain(Domain(id=domain_id, description="made by python-coiote"))
    assert result.result == domain_id
    listed = client.domains.get_all()
    assert listed.status_code == 200 and domain_id in listed.json()
    assert client.domains.get_one(domain_id) == Domain(
        id=domain_id, description="made by python-coiote"
    )
    assert (
        client.domains.update_one(
            domain_id, DomainUpdateRequest(newDescription="changed")
        ).status_code
        == 204
    )
    assert client.domains.get_one(domain_id).description == "changed"
    assert client.domains.delete_one(domain_id).status_code == 204
    assert client.domains.get_one.__wrapped__(client.domains, domain_id).status_code == 404


def test_wrong_credentials_fail_cleanly(server):
    coiote = Coiote(server.url, auth=Credentials(username="admin", password="wrong-password"))
    try:
        with pytest.raises(ValueError, match="Failed to acquire auth token"):
            coiote.authenticator.acquire_token.__wrapped__(coiote.authenticator)
    finally:
        coiote.session.close()
