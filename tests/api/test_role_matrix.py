"""Who may call what, route by route, over real HTTP against organizer A's real objects.

The routes come from the app's own OpenAPI document, so a new route under a guarded prefix
fails here until it has a row in MATRIX. Each (route, actor) is its own test. A refusal
must change nothing: organizer A's rows are read from the database before and after.

Actors: `owner` (staff of organizer A), `other_organizer` (staff of organizer B), `buyer`
(the attendee who bought A's orders), `attendee` (another attendee), `finance`, `admin` and
`anonymous`. Refusals: 401 without a token, 403 when the role may never do this, 404 when
the object is someone else's (as if it did not exist).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from PIL import Image
from sqlalchemy import ColumnElement, Table, or_, select

from api.db import unit_of_work
from api.main import create_app
from api.models import (
    CheckIn,
    Event,
    EventMedia,
    LedgerEntry,
    Order,
    OrderItem,
    Organizer,
    OrganizerMember,
    Payment,
    PromoCode,
    Quota,
    Refund,
    Role,
    Ticket,
    TicketType,
    User,
    Venue,
    quota_ticket_types,
)
from tests.api.organizing import iso, publish_event

ACTORS = ("owner", "other_organizer", "buyer", "attendee", "finance", "admin", "anonymous")
GUARDED_PREFIXES = ("/organizer", "/organizers", "/orders", "/check-ins", "/admin")
ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


def _guarded(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in GUARDED_PREFIXES)


def guarded_routes() -> list[tuple[str, str]]:
    """(METHOD, path template) of every guarded operation in the app's OpenAPI document."""
    paths = create_app().openapi()["paths"]
    methods = {"get", "post", "put", "patch", "delete"}
    return sorted(
        (method.upper(), path)
        for path, operations in paths.items()
        if _guarded(path)
        for method in operations
        if method in methods
    )


# --- organizer A's world, built through the API as its people would -------------------------------


@dataclass
class Cast:
    """The actors who are not organizer A's own: organizer B's staff, an attendee, finance, an
    admin and nobody. Shared by worlds unless a call would change the caller's own account."""

    users: dict[str, int]
    clients: dict[str, httpx.Client] = field(repr=False)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def build_cast(api) -> Cast:
    users, clients = {}, {}
    for actor, role in [
        ("other_organizer", Role.ATTENDEE),  # becomes an organizer by opening organizer B
        ("attendee", Role.ATTENDEE),
        ("finance", Role.FINANCE),
        ("admin", Role.ADMIN),
    ]:
        users[actor], clients[actor] = api.user(role, actor.replace("_", "-"))
    clients["anonymous"] = api.client()
    _ok(clients["other_organizer"].post("/organizers", json={"name": "Organizer B"}))
    return Cast(users, clients)


@dataclass
class World:
    organizer_id: int  # organizer A
    venue_id: int
    event_id: int  # published, on sale
    draft_event_id: int  # has a ticket type, not yet published
    ticket_type_id: int
    paid_order_id: int  # the buyer's, with tickets
    pending_order_id: int  # the buyer's, holding tickets
    ticket_code: str  # of the paid order, not checked in
    member_id: int  # another member of organizer A
    member_email: str
    bystander_email: str  # an attendee nobody has added anywhere
    buyer_email: str
    users: dict[str, int]
    clients: dict[str, httpx.Client] = field(repr=False)
    own_clients: list[httpx.Client] = field(repr=False)

    def close(self) -> None:
        for client in self.own_clients:
            client.close()


def _ok(response: httpx.Response) -> dict:
    assert response.is_success, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def _account(api, name: str) -> tuple[int, str]:
    """An attendee who never signs in here: (id, e-mail)."""
    email = f"{name}-{uuid.uuid4().hex}@example.com"
    with unit_of_work(api.engine) as session:
        user = User(email=email, password_hash="unused", full_name=name, role=Role.ATTENDEE)
        session.add(user)
        session.flush()
        return user.id, email


def build_world(api, cast: Cast) -> World:
    """Organizer A (its owner, a venue, a published event with a quota, a promo code and an
    image, a draft event) and a buyer's paid and pending orders, all made through the API."""
    users, clients = dict(cast.users), dict(cast.clients)
    for actor in ("owner", "buyer"):  # the owner becomes an organizer by opening organizer A
        users[actor], clients[actor] = api.user(Role.ATTENDEE, actor)
    users["member"], member_email = _account(api, "member")
    users["bystander"], bystander_email = _account(api, "bystander")
    owner, buyer = clients["owner"], clients["buyer"]

    event_id, tiers = publish_event(owner, tiers={"Standing": (4_500, 1_000)})
    ticket_type_id = tiers["Standing"]
    (organizer,) = _ok(owner.get("/organizers"))
    (venue,) = _ok(owner.get("/organizer/venues"))
    _ok(owner.post(f"/organizers/{organizer['id']}/members", json={"email": member_email}))
    _ok(owner.post(f"/organizer/events/{event_id}/quotas", json=_quota(ticket_type_id)))
    _ok(owner.post(f"/organizer/events/{event_id}/promo-codes", json=_promo("WELCOME")))
    _ok(owner.post(f"/organizer/events/{event_id}/media", files=_image()))
    draft = _ok(owner.post("/organizer/events", json=_event(organizer["id"], venue["id"])))
    _ok(owner.post(f"/organizer/events/{draft['id']}/ticket-types", json=_ticket_type()))

    two = {"event_id": event_id, "items": [{"ticket_type_id": ticket_type_id, "quantity": 2}]}
    paid = _ok(buyer.post("/orders", json=two))
    pending = _ok(buyer.post("/orders", json=two))
    _ok(buyer.post(f"/orders/{paid['id']}/payments", json={"payment_method": "pm_card_visa"}))
    tickets = _ok(buyer.get(f"/orders/{paid['id']}/tickets"))
    return World(
        organizer_id=organizer["id"],
        venue_id=venue["id"],
        event_id=event_id,
        draft_event_id=draft["id"],
        ticket_type_id=ticket_type_id,
        paid_order_id=paid["id"],
        pending_order_id=pending["id"],
        ticket_code=tickets[0]["code"],
        member_id=users["member"],
        member_email=member_email,
        bystander_email=bystander_email,
        buyer_email=_ok(buyer.get("/auth/me"))["email"],
        users=users,
        clients=clients,
        own_clients=[owner, buyer],
    )


def _event(organizer_id: int, venue_id: int) -> dict:
    now = datetime.now(UTC)
    return {
        "organizer_id": organizer_id,
        "venue_id": venue_id,
        "title": "Late Shift",
        "category": "theatre",
        "timezone": "Europe/Berlin",
        "starts_at": iso(now + timedelta(days=40)),
        "ends_at": iso(now + timedelta(days=40, hours=2)),
        "sales_start_at": iso(now - timedelta(hours=1)),
        "sales_end_at": iso(now + timedelta(days=39)),
    }


def _ticket_type() -> dict:
    return {"name": "Balcony", "price_minor": 3_000, "currency": "EUR", "capacity": 50}


def _quota(ticket_type_id: int) -> dict:
    return {"name": "Floor", "capacity": 900, "ticket_type_ids": [ticket_type_id]}


def _promo(code: str) -> dict:
    return {"code": code, "kind": "percent", "value": 10}


def _image() -> dict:
    return {"file": ("poster.png", _png(), "image/png")}


def snapshot(engine, world: World) -> dict[str, list[tuple]]:
    """Every row of organizer A's, and the actors' accounts and memberships."""
    events = select(Event.id).where(Event.organizer_id == world.organizer_id)
    orders = select(Order.id).where(Order.event_id.in_(events))
    users = list(world.users.values())
    scopes: list[tuple[type | Table, ColumnElement[bool]]] = [
        (Organizer, Organizer.id == world.organizer_id),
        (
            OrganizerMember,
            or_(
                OrganizerMember.organizer_id == world.organizer_id,
                OrganizerMember.user_id.in_(users),
            ),
        ),
        (User, User.id.in_(users)),
        (Venue, Venue.organizer_id == world.organizer_id),
        (Event, Event.organizer_id == world.organizer_id),
        (TicketType, TicketType.event_id.in_(events)),
        (Quota, Quota.event_id.in_(events)),
        (
            quota_ticket_types,
            quota_ticket_types.c.quota_id.in_(select(Quota.id).where(Quota.event_id.in_(events))),
        ),
        (PromoCode, PromoCode.event_id.in_(events)),
        (EventMedia, EventMedia.event_id.in_(events)),
        (Order, Order.event_id.in_(events)),
        (OrderItem, OrderItem.order_id.in_(orders)),
        (Payment, Payment.order_id.in_(orders)),
        (Refund, Refund.order_id.in_(orders)),
        (Ticket, Ticket.order_id.in_(orders)),
        (CheckIn, CheckIn.ticket_id.in_(select(Ticket.id).where(Ticket.order_id.in_(orders)))),
        (LedgerEntry, LedgerEntry.organizer_id == world.organizer_id),
    ]
    with unit_of_work(engine) as session:
        result = {}
        for model, scope in scopes:
            table = model if isinstance(model, Table) else model.__table__
            query = select(table).where(scope).order_by(*table.primary_key.columns)
            result[table.name] = [tuple(row) for row in session.execute(query)]
        return result


# --- the matrix -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    url: str
    json: dict | None = None
    files: dict | None = None
    params: dict | None = None


@dataclass(frozen=True)
class Row:
    call: Callable[[World], Call]
    expect: dict[str, int]  # actor -> status
    # Checks an allowed answer beyond its status: (world, actor, response).
    check: Callable[[World, str, httpx.Response], None] | None = None
    # Allowed calls change the caller's own account: they get callers of their own.
    changes_caller: bool = False


def staff(ok: int, *, other_organizer: int = 404) -> dict[str, int]:
    """An organizer back-office action: organizer A's staff and admins only."""
    return {
        "owner": ok,
        "admin": ok,
        "other_organizer": other_organizer,
        "buyer": 403,
        "attendee": 403,
        "finance": 403,
        "anonymous": 401,
    }


def everyone(ok: int, **exceptions: int) -> dict[str, int]:
    """Any signed-in caller."""
    return {**dict.fromkeys(ACTORS, ok), "anonymous": 401, **exceptions}


def _ids(response: httpx.Response) -> list[int]:
    body = response.json()
    return [item["id"] for item in (body["items"] if isinstance(body, dict) else body)]


def _lists(field_name: str, *, seen_by: tuple[str, ...]):
    """An allowed listing that shows the world's object to `seen_by` and to nobody else."""

    def check(world: World, actor: str, response: httpx.Response) -> None:
        assert (getattr(world, field_name) in _ids(response)) == (actor in seen_by)

    return check


def _shows_order(world: World, actor: str, response: httpx.Response) -> None:
    assert response.json()["id"] == world.paid_order_id


def _lists_buyer(world: World, actor: str, response: httpx.Response) -> None:
    rows = {o["id"]: o["buyer_email"] for o in response.json()["items"]}
    assert rows[world.paid_order_id] == world.buyer_email


def _finds_member(world: World, actor: str, response: httpx.Response) -> None:
    assert _ids(response) == [world.member_id]


def _lists_own_events(world: World, actor: str, response: httpx.Response) -> None:
    # An admin's pages hold every organizer's events, A's not necessarily on the first.
    if actor != "admin":
        _lists("event_id", seen_by=("owner",))(world, actor, response)


def _event_path(suffix: str = "") -> Callable[[World], Call]:
    return lambda w: Call(f"/organizer/events/{w.event_id}{suffix}")


ORDER_LINE = lambda w: {"ticket_type_id": w.ticket_type_id, "quantity": 1}  # noqa: E731

MATRIX: dict[tuple[str, str], Row] = {
    # Orders: the buyer's own; finance and admins read all; staff refund.
    ("POST", "/orders"): Row(
        lambda w: Call("/orders", json={"event_id": w.event_id, "items": [ORDER_LINE(w)]}),
        everyone(201),  # a published event is for sale to anyone signed in
    ),
    ("GET", "/orders"): Row(
        lambda w: Call("/orders"),
        everyone(200),
        _lists("paid_order_id", seen_by=("buyer",)),
    ),
    ("GET", "/orders/{order_id}"): Row(
        lambda w: Call(f"/orders/{w.paid_order_id}"),
        everyone(200, owner=404, other_organizer=404, attendee=404),
        _shows_order,
    ),
    ("POST", "/orders/{order_id}/cancel"): Row(
        lambda w: Call(f"/orders/{w.pending_order_id}/cancel"),
        everyone(404, buyer=200, admin=200),
    ),
    # Paying charges the caller's payment method for the order: only its buyer may, so even an
    # admin is answered as for any order not theirs.
    ("POST", "/orders/{order_id}/payments"): Row(
        lambda w: Call(
            f"/orders/{w.pending_order_id}/payments", json={"payment_method": "pm_card_visa"}
        ),
        everyone(404, buyer=201),
    ),
    ("GET", "/orders/{order_id}/tickets"): Row(
        lambda w: Call(f"/orders/{w.paid_order_id}/tickets"),
        everyone(200, owner=404, other_organizer=404, attendee=404),
    ),
    ("POST", "/orders/{order_id}/refunds"): Row(
        lambda w: Call(f"/orders/{w.paid_order_id}/refunds", json={"amount_minor": 100}),
        {**staff(201), "finance": 201},
    ),
    # The door.
    ("POST", "/check-ins"): Row(
        lambda w: Call("/check-ins", json={"code": w.ticket_code}), staff(201)
    ),
    # Organizer accounts.
    ("GET", "/organizers"): Row(
        lambda w: Call("/organizers"),
        everyone(200),
        _lists("organizer_id", seen_by=("owner", "admin")),
    ),
    ("POST", "/organizers"): Row(
        lambda w: Call("/organizers", json={"name": "Pop-up Stage"}),
        everyone(201, finance=403),  # finance audits organizers and may not become one
        changes_caller=True,  # an attendee who opens one becomes an organizer
    ),
    ("POST", "/organizers/{organizer_id}/members"): Row(
        lambda w: Call(f"/organizers/{w.organizer_id}/members", json={"email": w.bystander_email}),
        staff(201),
    ),
    # The organizer back office.
    ("GET", "/organizer/venues"): Row(
        lambda w: Call("/organizer/venues"),
        staff(200, other_organizer=200),
        _lists("venue_id", seen_by=("owner", "admin")),
    ),
    ("POST", "/organizer/venues"): Row(
        lambda w: Call(
            "/organizer/venues",
            json={"organizer_id": w.organizer_id, "name": "Annex", "city": "Kiel", "country": "DE"},
        ),
        staff(201),
    ),
    ("GET", "/organizer/events"): Row(
        lambda w: Call("/organizer/events", params={"size": 100}),
        staff(200, other_organizer=200),
        _lists_own_events,
    ),
    ("POST", "/organizer/events"): Row(
        lambda w: Call("/organizer/events", json=_event(w.organizer_id, w.venue_id)),
        staff(201),
    ),
    ("GET", "/organizer/events/{event_id}"): Row(_event_path(), staff(200)),
    ("PATCH", "/organizer/events/{event_id}"): Row(
        lambda w: Call(f"/organizer/events/{w.event_id}", json={"title": "Renamed"}), staff(200)
    ),
    ("POST", "/organizer/events/{event_id}/publish"): Row(
        lambda w: Call(f"/organizer/events/{w.draft_event_id}/publish"), staff(200)
    ),
    ("POST", "/organizer/events/{event_id}/cancel"): Row(_event_path("/cancel"), staff(200)),
    ("GET", "/organizer/events/{event_id}/ticket-types"): Row(
        _event_path("/ticket-types"), staff(200)
    ),
    ("POST", "/organizer/events/{event_id}/ticket-types"): Row(
        lambda w: Call(f"/organizer/events/{w.event_id}/ticket-types", json=_ticket_type()),
        staff(201),
    ),
    ("PATCH", "/organizer/events/{event_id}/ticket-types/{ticket_type_id}"): Row(
        lambda w: Call(
            f"/organizer/events/{w.event_id}/ticket-types/{w.ticket_type_id}",
            json={"capacity": 1_200, "name": "Standing (late)"},
        ),
        staff(200),
    ),
    ("GET", "/organizer/events/{event_id}/quotas"): Row(_event_path("/quotas"), staff(200)),
    ("POST", "/organizer/events/{event_id}/quotas"): Row(
        lambda w: Call(f"/organizer/events/{w.event_id}/quotas", json=_quota(w.ticket_type_id)),
        staff(201),
    ),
    ("GET", "/organizer/events/{event_id}/promo-codes"): Row(
        _event_path("/promo-codes"), staff(200)
    ),
    ("POST", "/organizer/events/{event_id}/promo-codes"): Row(
        lambda w: Call(f"/organizer/events/{w.event_id}/promo-codes", json=_promo("LATE20")),
        staff(201),
    ),
    ("POST", "/organizer/events/{event_id}/media"): Row(
        lambda w: Call(f"/organizer/events/{w.event_id}/media", files=_image()), staff(201)
    ),
    ("GET", "/organizer/events/{event_id}/orders"): Row(
        _event_path("/orders"), staff(200), _lists_buyer
    ),
    # Administration.
    ("GET", "/admin/users"): Row(
        lambda w: Call("/admin/users", params={"email": w.member_email}),
        everyone(403, admin=200),
        _finds_member,
    ),
    ("PATCH", "/admin/users/{user_id}"): Row(
        lambda w: Call(f"/admin/users/{w.member_id}", json={"role": "finance"}),
        everyone(403, admin=200),
    ),
}

ROUTES = guarded_routes()


def test_every_guarded_route_has_a_row_and_every_row_a_route():
    routes = set(ROUTES)
    assert routes - set(MATRIX) == set(), "add these routes to MATRIX"
    assert set(MATRIX) - routes == set(), "these MATRIX rows name no route of the app"
    for key, row in MATRIX.items():
        assert set(row.expect) == set(ACTORS), f"{key} must say what each actor gets"


@pytest.fixture(scope="module")
def cast(live_api) -> Iterator[Cast]:
    cast = build_cast(live_api)
    yield cast
    cast.close()


@pytest.fixture(scope="module")
def shared_world(live_api, cast) -> Iterator[World]:
    """For reads and refusals, which must leave it as it was."""
    world = build_world(live_api, cast)
    yield world
    world.close()


@pytest.fixture
def fresh_world(live_api, cast) -> Iterator[Callable[..., World]]:
    """For allowed changes, each on a world of its own (and a cast of its own if asked)."""
    opened: list[Cast | World] = []

    def make(*, own_cast: bool = False) -> World:
        actors = build_cast(live_api) if own_cast else cast
        world = build_world(live_api, actors)
        opened.extend([actors, world] if own_cast else [world])
        return world

    yield make
    for thing in opened:
        thing.close()


def _send(client: httpx.Client, method: str, call: Call) -> httpx.Response:
    return client.request(method, call.url, json=call.json, files=call.files, params=call.params)


@pytest.mark.parametrize(
    ("method", "path", "actor"),
    [
        pytest.param(method, path, actor, id=f"{method} {path} as {actor}")
        for method, path in ROUTES
        for actor in ACTORS
    ],
)
def test_role_matrix(live_api, shared_world, fresh_world, method, path, actor):
    row = MATRIX.get((method, path))
    assert row is not None, f"{method} {path} has no row in MATRIX: say who may call it"
    expected = row.expect[actor]
    changes = expected < 300 and method != "GET"
    world = fresh_world(own_cast=row.changes_caller) if changes else shared_world
    call = row.call(world)
    before = snapshot(live_api.engine, world)

    response = _send(world.clients[actor], method, call)

    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.json()["error"]["code"] == ERROR_CODES[expected]
        assert snapshot(live_api.engine, world) == before, "a refused call changed something"
    elif row.check is not None:
        row.check(world, actor, response)


# --- beyond one route at a time -------------------------------------------------------------------


def test_another_organizers_check_in_leaves_the_ticket_unused(live_api, fresh_world):
    world = fresh_world()
    refused = world.clients["other_organizer"].post("/check-ins", json={"code": world.ticket_code})
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "not_found"
    with unit_of_work(live_api.engine) as session:
        entry = session.scalar(
            select(CheckIn.id)
            .join(Ticket, Ticket.id == CheckIn.ticket_id)
            .where(Ticket.code == world.ticket_code)
        )
    assert entry is None
    # The ticket is still good at its own organizer's door.
    admitted = world.clients["owner"].post("/check-ins", json={"code": world.ticket_code})
    assert admitted.status_code == 201, admitted.text


@pytest.fixture(scope="module")
def organizer_b(live_api, shared_world) -> dict[str, int]:
    """Organizer B's own published event, for mixing B's ids with A's."""
    b = shared_world.clients["other_organizer"]
    event_id, tiers = publish_event(b, tiers={"Seat": (2_000, 100)}, title="Organizer B Night")
    (organizer,) = _ok(b.get("/organizers"))
    return {"organizer_id": organizer["id"], "event_id": event_id, "ticket_type_id": tiers["Seat"]}


def test_another_organizer_cannot_reach_a_objects_through_its_own(
    live_api, shared_world, organizer_b
):
    """B's own event in the path, A's ticket type, venue or organizer in the body: still 404."""
    world, own = shared_world, organizer_b["event_id"]
    a_venue = {"organizer_id": world.organizer_id, "name": "Mine", "city": "Kiel", "country": "DE"}
    attempts = [
        ("PATCH", f"/organizer/events/{own}/ticket-types/{world.ticket_type_id}", {"capacity": 0}),
        (
            "POST",
            f"/organizer/events/{own}/quotas",
            {"name": "Grab", "capacity": 1, "ticket_type_ids": [world.ticket_type_id]},
        ),
        ("PATCH", f"/organizer/events/{own}", {"venue_id": world.venue_id}),
        ("POST", "/organizer/events", _event(organizer_b["organizer_id"], world.venue_id)),
        ("POST", "/organizer/venues", a_venue),
    ]
    before = snapshot(live_api.engine, world)
    for method, url, body in attempts:
        response = world.clients["other_organizer"].request(method, url, json=body)
        assert response.status_code == 404, f"{method} {url}: {response.text}"
        assert response.json()["error"]["code"] == "not_found"
    assert snapshot(live_api.engine, world) == before
    b_event = _ok(world.clients["other_organizer"].get(f"/organizer/events/{own}"))
    assert b_event["venue_id"] != world.venue_id


def test_a_ticket_type_cannot_be_bought_through_another_event(live_api, shared_world, organizer_b):
    world = shared_world
    body = {"event_id": organizer_b["event_id"], "items": [ORDER_LINE(world)]}
    before = snapshot(live_api.engine, world)
    response = world.clients["attendee"].post("/orders", json=body)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["details"]["ticket_type_ids"] == [world.ticket_type_id]
    assert snapshot(live_api.engine, world) == before
