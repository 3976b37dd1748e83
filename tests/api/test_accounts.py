"""Sign-up, sign-in, organizer membership and admin user management over HTTP."""

from __future__ import annotations

from api.models import Role


def test_sign_up_log_in_and_see_yourself(live_api):
    with live_api.client() as anonymous:
        created = anonymous.post(
            "/auth/signup",
            json={"email": "Ada@Example.com", "password": "long enough pw", "full_name": "Ada"},
        )
        assert created.status_code == 201, created.text
        assert created.json()["role"] == "attendee" and "password" not in created.text
        again = anonymous.post(
            "/auth/signup",
            json={"email": "ada@example.com", "password": "long enough pw", "full_name": "Ada"},
        )
        assert again.status_code == 409 and again.json()["error"]["code"] == "email_taken"
        wrong = anonymous.post(
            "/auth/login", json={"email": "ada@example.com", "password": "not the one"}
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        token = anonymous.post(
            "/auth/login", json={"email": "ADA@example.com", "password": "long enough pw"}
        ).json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600
    with live_api.client(token["access_token"]) as ada:
        me = ada.get("/auth/me").json()
    assert (me["email"], me["role"], me["organizer_ids"]) == ("Ada@Example.com", "attendee", [])


def test_forged_or_missing_tokens_are_refused(live_api):
    with live_api.client("not.a.token") as forged:
        assert forged.get("/auth/me").status_code == 401
    with live_api.client() as anonymous:
        response = anonymous.get("/orders")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_an_attendee_who_opens_an_organizer_account_becomes_an_organizer(live_api):
    _, user = live_api.user(name="founder")
    created = user.post("/organizers", json={"name": "Basement Shows"})
    assert created.status_code == 201
    me = user.get("/auth/me").json()
    assert me["role"] == "organizer" and me["organizer_ids"] == [created.json()["id"]]

    _, friend = live_api.user(name="friend")
    friend_email = friend.get("/auth/me").json()["email"]
    added = user.post(f"/organizers/{created.json()['id']}/members", json={"email": friend_email})
    assert added.status_code == 201 and added.json()["role"] == "organizer"
    assert friend.get("/organizers").json()[0]["name"] == "Basement Shows"


def test_admins_give_roles_and_disable_accounts(live_api):
    admin_id, admin = live_api.user(Role.ADMIN, name="admin")
    user_id, user = live_api.user(name="clerk")
    made_finance = admin.patch(f"/admin/users/{user_id}", json={"role": "finance"})
    assert made_finance.status_code == 200 and made_finance.json()["role"] == "finance"
    assert user.get("/auth/me").json()["role"] == "finance"  # effective at once

    listed = admin.get("/admin/users", params={"role": "finance"}).json()
    assert user_id in [u["id"] for u in listed["items"]]

    assert admin.patch(f"/admin/users/{user_id}", json={"is_active": False}).status_code == 200
    assert user.get("/auth/me").status_code == 401  # a disabled account's token stops working

    demote_self = admin.patch(f"/admin/users/{admin_id}", json={"role": "attendee"})
    assert demote_self.status_code == 422
    assert user.patch(f"/admin/users/{admin_id}", json={"role": "attendee"}).status_code == 401
