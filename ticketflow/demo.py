"""Demo traffic: a few weeks of a small ticketing platform, loaded through the running API.

`ticketflow up --demo` calls `load()` once every service answers. Everything goes over HTTP as
a front end would send it, except the first admin, who (as on any fresh install) comes from the
operator's side, the path of `ticketflow users add EMAIL --role admin`.

The story is drawn from one seeded `random.Random` before the first request: who buys what,
which holds are abandoned, which cards are declined, what is refunded and which tickets are
scanned at the door. The requests then run on a few threads, so every run loads the same story
in well under a minute (only ids and ticket codes differ).

Each simulated person sends from an address of their own (TEST-NET, in `X-Forwarded-For`, which
uvicorn accepts from a local proxy): the API's per-address sign-up limit then sees sixty
visitors, as in production, rather than one address opening sixty accounts.

Loading twice adds nothing: when the demo admin exists already, `load()` says so and returns.
"""

from __future__ import annotations

import enum
import random
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from functools import partial
from typing import TextIO
from zoneinfo import ZoneInfo

import httpx

from ticketflow.settings import LOCALHOST, Settings

SEED = 2026
DEMO_PASSWORD = "ticketflow-demo"
ADMIN_EMAIL = "admin@ticketflow.example"
ATTENDEES = 60
ORDERS = 320
MAX_ORDERS_PER_BUYER = 10  # well inside the checkout rate limit (30 a minute per buyer)
THREADS = 8
DECLINING_CARD = "pm_card_visa_chargeDeclined"  # Stripe's generic decline test card
CARD = "pm_card_visa"
WEBHOOK_DELAY_S = 2.0  # the embedded processor sends each webhook 1 s after its event


class DemoError(Exception):
    """The demo traffic could not be loaded; the message says what the API answered."""


class DemoCancelled(DemoError):
    """Asked to stop while loading."""


# --- the cast and the catalog ----------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    address: str  # the client address their requests come from


@dataclass(frozen=True)
class Venue:
    name: str
    address: str
    city: str
    country: str
    timezone: str


@dataclass(frozen=True)
class Tier:
    name: str
    price_minor: int
    capacity: int
    max_per_order: int = 8


@dataclass(frozen=True)
class Promo:
    code: str
    kind: str  # "percent" or "fixed" (minor units off)
    value: int
    max_uses: int | None = None
    valid_days: int | None = None  # from now; None: as long as sales run


@dataclass(frozen=True)
class Quota:
    name: str
    capacity: int
    tiers: tuple[str, ...]


@dataclass(frozen=True)
class DemoEvent:
    title: str
    category: str
    venue: str
    days_out: int  # 0: on right now, doors open and tickets being scanned
    hours: float
    tiers: tuple[Tier, ...]
    starts: str = ""  # local time of day ("19:30"); events on now started an hour ago
    description: str = ""
    quota: Quota | None = None
    promos: tuple[Promo, ...] = ()
    popularity: int = 10  # relative share of the orders


@dataclass(frozen=True)
class DemoOrganizer:
    name: str
    currency: str
    staff: tuple[Person, ...]  # the first one opens the organizer account
    venues: tuple[Venue, ...]
    events: tuple[DemoEvent, ...]


def _staff(number: int, name: str, domain: str) -> Person:
    return Person(name, f"{name.split()[0].lower()}@{domain}", f"203.0.113.{number}")


FINANCE = _staff(1, "Farah Okafor", "ticketflow.example")
ORGANIZERS = (
    DemoOrganizer(
        "Night Owls Live",
        "EUR",
        (
            _staff(10, "Mara Lindqvist", "nightowls.example"),
            _staff(11, "Jonas Becker", "nightowls.example"),
        ),
        (
            Venue("Pier 9", "Große Elbstraße 9", "Hamburg", "DE", "Europe/Berlin"),
            Venue("Kesselhaus", "Knaackstraße 97", "Berlin", "DE", "Europe/Berlin"),
        ),
        (
            DemoEvent(
                "Harbour Lights: Late Session",
                "music",
                "Pier 9",
                days_out=0,
                hours=4,
                tiers=(Tier("Standing", 3_900, 600), Tier("Balcony", 5_900, 120, 4)),
                description="Four hours of live electronica on the water.",
                promos=(Promo("NIGHTOWL10", "percent", 10),),
                popularity=28,
            ),
            DemoEvent(
                "Elbe Jazz Weekender",
                "music",
                "Pier 9",
                days_out=12,
                starts="18:00",
                hours=6,
                tiers=(Tier("Festival pass", 8_900, 800), Tier("Student", 4_900, 200, 2)),
                description="Six stages along the river, from swing to free jazz.",
                quota=Quota("Festival ground", 900, ("Festival pass", "Student")),
                promos=(Promo("EARLYBIRD", "percent", 15, valid_days=5),),
                popularity=20,
            ),
            DemoEvent(
                "Stand-up in the Boiler Room",
                "comedy",
                "Kesselhaus",
                days_out=4,
                starts="20:00",
                hours=2,
                tiers=(Tier("Seated", 2_200, 250),),
                popularity=9,
            ),
            DemoEvent(
                "Kesselhaus Techno Marathon",
                "music",
                "Kesselhaus",
                days_out=46,
                starts="23:00",
                hours=8,
                tiers=(Tier("Entry", 2_500, 1_000), Tier("Fast lane", 4_000, 150, 4)),
                popularity=12,
            ),
        ),
    ),
    DemoOrganizer(
        "Thameside Arts",
        "GBP",
        (
            _staff(20, "Priya Natarajan", "thamesidearts.example"),
            _staff(21, "Tom Hargreaves", "thamesidearts.example"),
        ),
        (
            Venue("The Foundry", "84 Great Eastern Street", "London", "GB", "Europe/London"),
            Venue("Peter Street Hall", "27 Peter Street", "Manchester", "GB", "Europe/London"),
        ),
        (
            DemoEvent(
                "Thameside Comedy Club: Friday Late",
                "comedy",
                "The Foundry",
                days_out=0,
                hours=3,
                tiers=(Tier("Table seat", 1_800, 120, 6), Tier("Bar stool", 1_200, 40, 2)),
                description="Five comics, one compère, no heckling (much).",
                popularity=16,
            ),
            DemoEvent(
                "A Midsummer Night's Dream",
                "theatre",
                "The Foundry",
                days_out=9,
                starts="19:30",
                hours=3,
                tiers=(
                    Tier("Stalls", 4_500, 260),
                    Tier("Concession (stalls)", 2_000, 80, 2),
                    Tier("Circle", 3_200, 180),
                ),
                description="Shakespeare's comedy in a disused ironworks.",
                quota=Quota("Stalls", 300, ("Stalls", "Concession (stalls)")),
                popularity=14,
            ),
            DemoEvent(
                "Northern Strings: Brahms & Elgar",
                "music",
                "Peter Street Hall",
                days_out=75,
                starts="19:30",
                hours=2.5,
                tiers=(Tier("Premium", 6_800, 150, 6), Tier("Standard", 3_800, 600)),
                popularity=8,
            ),
            DemoEvent(
                "Family Puppet Matinee",
                "family",
                "Peter Street Hall",
                days_out=110,
                starts="14:00",
                hours=1.5,
                tiers=(Tier("Adult", 1_400, 400), Tier("Child", 900, 400)),
                quota=Quota("Auditorium", 350, ("Adult", "Child")),
                promos=(Promo("FAMILY5", "fixed", 500, max_uses=40),),
                popularity=7,
            ),
        ),
    ),
    DemoOrganizer(
        "Rive Gauche Conferences",
        "EUR",
        (
            _staff(30, "Camille Dubois", "rivegauche.example"),
            _staff(31, "Bram de Vries", "rivegauche.example"),
        ),
        (
            Venue("Halle Pajol", "20 Esplanade Nathalie Sarraute", "Paris", "FR", "Europe/Paris"),
            Venue("Beurs van Berlage", "Damrak 243", "Amsterdam", "NL", "Europe/Amsterdam"),
        ),
        (
            DemoEvent(
                "Product Leaders Breakfast",
                "business",
                "Beurs van Berlage",
                days_out=6,
                starts="08:00",
                hours=2,
                tiers=(Tier("Seat", 3_500, 80, 4),),
                popularity=5,
            ),
            DemoEvent(
                "Amsterdam Founders Night",
                "business",
                "Beurs van Berlage",
                days_out=21,
                starts="18:30",
                hours=4,
                tiers=(Tier("General", 2_500, 300), Tier("Supporter", 7_500, 30, 2)),
                popularity=9,
            ),
            DemoEvent(
                "Generative Design Workshop",
                "workshop",
                "Halle Pajol",
                days_out=33,
                starts="10:00",
                hours=6,
                tiers=(Tier("Seat", 24_000, 30, 4),),
                popularity=4,
            ),
            DemoEvent(
                "DataOps Summit Paris",
                "conference",
                "Halle Pajol",
                days_out=150,
                starts="09:00",
                hours=33,
                tiers=(
                    Tier("Conference pass", 59_000, 400, 5),
                    Tier("Workshops + conference", 89_000, 80, 5),
                    Tier("Student", 9_900, 50, 1),
                ),
                description="Two days on pipelines, warehouses and the people who run them.",
                promos=(Promo("SUMMIT20", "percent", 20, max_uses=60, valid_days=30),),
                popularity=8,
            ),
        ),
    ),
)

# Split in `_attendees` (a tuple literal would take a line per name).
FIRST_NAMES = """Anna Ben Chloé Daan Elif Finn Grace Hugo Ines Jakob Lena Liam Maja Noah Olivia
Pablo Quentin Rosa Sami Tara Umar Vera Wim Yara Zoe Aisha Bruno Clara Emil Fatima"""
LAST_NAMES = """Schmidt Müller Jansen Dubois Smith Kowalski Rossi García Novak Berg Moreau Evans
Okafor Nielsen Costa Fischer Visser Laurent Patel Wagner"""
MAIL_DOMAINS = ("example.com", "example.net", "example.org")


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def _attendees(rng: random.Random) -> list[Person]:
    names = rng.sample([(f, s) for f in FIRST_NAMES.split() for s in LAST_NAMES.split()], ATTENDEES)
    return [
        Person(
            f"{first} {last}",
            f"{_ascii(first)}.{_ascii(last)}@{rng.choice(MAIL_DOMAINS)}",
            f"198.51.100.{number + 1}",
        )
        for number, (first, last) in enumerate(names)
    ]


# --- the traffic, planned up front -----------------------------------------------------------


class Outcome(enum.StrEnum):
    PAID = "paid"
    ABANDONED = "abandoned"  # the hold is left to expire
    CANCELLED = "cancelled"  # the buyer gives the tickets back
    DECLINED = "declined"  # the card is declined and the buyer gives up
    DECLINED_THEN_PAID = "declined_then_paid"  # a second card works


# Percent of orders ending each way.
OUTCOME_SHARES = {
    Outcome.PAID: 81,
    Outcome.ABANDONED: 7,
    Outcome.CANCELLED: 7,
    Outcome.DECLINED: 2,
    Outcome.DECLINED_THEN_PAID: 3,
}


class RefundKind(enum.StrEnum):
    PARTIAL = "partial"  # one ticket back, by the organizer's staff
    FULL = "full"  # everything back, by finance


@dataclass(frozen=True)
class OrderPlan:
    number: int
    buyer: int  # index into the attendees
    organizer: int
    event: int  # index into the organizer's events
    lines: tuple[tuple[str, int], ...]  # tier name, quantity
    promo: str | None
    outcome: Outcome
    refund: RefundKind | None
    scans: tuple[bool, ...]  # per ticket: scanned at the door

    @property
    def paid(self) -> bool:
        return self.outcome in (Outcome.PAID, Outcome.DECLINED_THEN_PAID)


def _event_at(organizer: int, event: int) -> DemoEvent:
    return ORGANIZERS[organizer].events[event]


def plan_orders(rng: random.Random) -> list[OrderPlan]:
    """Who buys what and how it ends, for every order of the demo."""
    events = [(o, e) for o, org in enumerate(ORGANIZERS) for e in range(len(org.events))]
    weights = [_event_at(o, e).popularity for o, e in events]
    appetite = [rng.choice((1, 1, 2, 3, 5)) for _ in range(ATTENDEES)]  # some buy a lot
    orders_by_buyer: Counter[int] = Counter()
    promo_uses: Counter[str] = Counter()
    plans = []
    for number in range(1, ORDERS + 1):
        buyers = [b for b in range(ATTENDEES) if orders_by_buyer[b] < MAX_ORDERS_PER_BUYER]
        buyer = rng.choices(buyers, [appetite[b] for b in buyers])[0]
        orders_by_buyer[buyer] += 1
        organizer, event_index = rng.choices(events, weights)[0]
        event = _event_at(organizer, event_index)
        tiers = rng.sample(event.tiers, 2 if len(event.tiers) > 1 and rng.random() < 0.2 else 1)
        lines = tuple(
            (tier.name, min(tier.max_per_order, rng.choices((1, 2, 3, 4), (45, 35, 12, 8))[0]))
            for tier in tiers
        )
        promo = None
        if event.promos and rng.random() < 0.3:
            candidate = rng.choice(event.promos)
            if candidate.max_uses is None or promo_uses[candidate.code] < candidate.max_uses:
                promo = candidate.code
                promo_uses[promo] += 1
        outcome = rng.choices(list(OUTCOME_SHARES), list(OUTCOME_SHARES.values()))[0]
        paid = outcome in (Outcome.PAID, Outcome.DECLINED_THEN_PAID)
        tickets = sum(quantity for _, quantity in lines)
        on_now = event.days_out == 0
        refund = None
        roll = rng.random()
        if paid and roll < 0.05 and not on_now:
            refund = RefundKind.FULL
        elif paid and roll < 0.12 and tickets > 1:
            refund = RefundKind.PARTIAL
        arrived = on_now and paid and refund != RefundKind.FULL and rng.random() < 0.75
        scans = tuple(arrived and rng.random() < 0.9 for _ in range(tickets))
        plans.append(
            OrderPlan(number, buyer, organizer, event_index, lines, promo, outcome, refund, scans)
        )
    return plans


# --- talking to the API ----------------------------------------------------------------------


class Visitor:
    """One person's browser: their own address, connection and access token."""

    def __init__(self, base_url: str, person: Person):
        self.person = person
        self.client = httpx.Client(
            base_url=base_url, timeout=30, headers={"X-Forwarded-For": person.address}
        )

    def call(
        self, method: str, path: str, *, expect: int | tuple[int, ...] = (200, 201), **kwargs
    ) -> httpx.Response:
        expected = (expect,) if isinstance(expect, int) else expect
        for attempt in range(4):
            response = self.client.request(method, path, **kwargs)
            if response.status_code != 503 or attempt == 3:
                break
            time.sleep(float(response.headers.get("Retry-After", "0.2")))  # busy: retry
        if response.status_code not in expected:
            raise DemoError(
                f"{method} {path} as {self.person.email} answered "
                f"{response.status_code}: {_error_text(response)}"
            )
        return response

    def sign_up(self) -> None:
        self.call(
            "POST",
            "/auth/signup",
            json={
                "email": self.person.email,
                "password": DEMO_PASSWORD,
                "full_name": self.person.name,
            },
        )

    def log_in(self) -> None:
        body = {"email": self.person.email, "password": DEMO_PASSWORD}
        token = self.call("POST", "/auth/login", json=body).json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.client.close()


def _join(visitor: Visitor) -> None:
    visitor.sign_up()
    visitor.log_in()


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']} {error.get('details') or ''}".strip()
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def _in_parallel(tasks: Iterable[Callable[[], object]], stop: Callable[[], bool]) -> list:
    def run(task: Callable[[], object]) -> object:
        if stop():
            raise DemoCancelled("stopped while loading the demo traffic")
        return task()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, list(tasks)))


# --- loading ---------------------------------------------------------------------------------


@dataclass
class Summary:
    """What one `load()` added (all zero when the demo was loaded before)."""

    already_loaded: bool = False
    seconds: float = 0.0
    staff: int = 0
    attendees: int = 0
    organizers: int = 0
    venues: int = 0
    cities: int = 0
    events: int = 0
    events_on_now: int = 0
    ticket_types: int = 0
    quotas: int = 0
    promo_codes: int = 0
    orders: Counter[str] = field(default_factory=Counter)
    with_promo: int = 0
    tickets: int = 0
    check_ins: int = 0
    refunds: Counter[str] = field(default_factory=Counter)
    refunded_minor: Counter[str] = field(default_factory=Counter)  # per currency


@dataclass
class Catalog:
    """Ids the API gave to what the organizers built."""

    event_ids: dict[tuple[int, int], int] = field(default_factory=dict)
    tier_ids: dict[tuple[int, int, str], int] = field(default_factory=dict)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _schedule(event: DemoEvent, venue: Venue, now: datetime) -> dict[str, str]:
    """Event and sales times: local evenings some days out, or on now (doors open)."""
    if event.days_out == 0:
        starts = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        ends = starts + timedelta(hours=event.hours)
        sales_end = ends  # the box office sells at the door
    else:
        zone = ZoneInfo(venue.timezone)
        day: date = now.astimezone(zone).date() + timedelta(days=event.days_out)
        starts = datetime.combine(day, clock.fromisoformat(event.starts), tzinfo=zone)
        ends = starts + timedelta(hours=event.hours)
        sales_end = starts
    sales_start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=30)
    return {
        "timezone": venue.timezone,
        "starts_at": _iso(starts),
        "ends_at": _iso(ends),
        "sales_start_at": _iso(sales_start),
        "sales_end_at": _iso(sales_end),
    }


def _build_organizer(
    index: int, organizer: DemoOrganizer, staff: list[Visitor], now: datetime, catalog: Catalog
) -> None:
    """The owner opens the organizer account, adds a colleague, and builds its events."""
    owner = staff[0]
    organizer_id = owner.call("POST", "/organizers", json={"name": organizer.name}).json()["id"]
    for member in staff[1:]:
        owner.call(
            "POST", f"/organizers/{organizer_id}/members", json={"email": member.person.email}
        )
    venue_ids = {}
    for venue in organizer.venues:
        body = {
            "name": venue.name,
            "address": venue.address,
            "city": venue.city,
            "country": venue.country,
        }
        venue_ids[venue.name] = owner.call("POST", "/organizer/venues", json=body).json()["id"]
    for event_index, event in enumerate(organizer.events):
        venue = next(v for v in organizer.venues if v.name == event.venue)
        body = {
            "venue_id": venue_ids[venue.name],
            "title": event.title,
            "description": event.description,
            "category": event.category,
            **_schedule(event, venue, now),
        }
        event_id = owner.call("POST", "/organizer/events", json=body).json()["id"]
        catalog.event_ids[index, event_index] = event_id
        for tier in event.tiers:
            body = {
                "name": tier.name,
                "price_minor": tier.price_minor,
                "currency": organizer.currency,
                "capacity": tier.capacity,
                "max_per_order": tier.max_per_order,
            }
            path = f"/organizer/events/{event_id}/ticket-types"
            catalog.tier_ids[index, event_index, tier.name] = owner.call(
                "POST", path, json=body
            ).json()["id"]
        if event.quota:
            ids = [catalog.tier_ids[index, event_index, name] for name in event.quota.tiers]
            body = {"name": event.quota.name, "capacity": event.quota.capacity}
            owner.call(
                "POST", f"/organizer/events/{event_id}/quotas", json=body | {"ticket_type_ids": ids}
            )
        for promo in event.promos:
            body = {"code": promo.code, "kind": promo.kind, "value": promo.value}
            if promo.max_uses:
                body["max_uses"] = promo.max_uses
            if promo.valid_days:
                body["valid_until"] = _iso(now + timedelta(days=promo.valid_days))
            owner.call("POST", f"/organizer/events/{event_id}/promo-codes", json=body)
        owner.call("POST", f"/organizer/events/{event_id}/publish")


@dataclass
class Placed:
    plan: OrderPlan
    order_id: int
    subtotal_minor: int
    total_minor: int
    currency: str
    unit_prices: list[int]
    ticket_codes: list[str]
    paid_at: float | None  # time.monotonic()


def _buy(buyer: Visitor, plan: OrderPlan, catalog: Catalog) -> Placed:
    """One order as the buyer's front end sends it, ending as the plan says."""
    key = f"demo-{plan.number}"
    body = {
        "event_id": catalog.event_ids[plan.organizer, plan.event],
        "items": [
            {"ticket_type_id": catalog.tier_ids[plan.organizer, plan.event, name], "quantity": q}
            for name, q in plan.lines
        ],
    }
    if plan.promo:
        body["promo_code"] = plan.promo
    order = buyer.call(
        "POST", "/orders", json=body, headers={"Idempotency-Key": f"{key}-order"}, expect=201
    ).json()
    path = f"/orders/{order['id']}"
    if plan.outcome == Outcome.CANCELLED:
        buyer.call("POST", f"{path}/cancel")
    if plan.outcome in (Outcome.DECLINED, Outcome.DECLINED_THEN_PAID):
        declined = buyer.call(
            "POST",
            f"{path}/payments",
            json={"payment_method": DECLINING_CARD},
            headers={"Idempotency-Key": f"{key}-pay-1"},
            expect=(201, 402),
        )
        if declined.status_code != 402:
            raise DemoError(f"the processor did not decline {DECLINING_CARD}: {declined.text}")
    codes, paid_at = [], None
    if plan.paid:
        paid = buyer.call(
            "POST",
            f"{path}/payments",
            json={"payment_method": CARD},
            headers={"Idempotency-Key": f"{key}-pay-2"},
            expect=201,
        ).json()
        if paid["order_status"] != "paid":
            raise DemoError(f"order {order['id']} is {paid['order_status']} after paying")
        paid_at = time.monotonic()
        if any(plan.scans):
            codes = [t["code"] for t in buyer.call("GET", f"{path}/tickets").json()]
    return Placed(
        plan,
        order["id"],
        order["subtotal_minor"],
        order["total_minor"],
        order["currency"],
        [item["unit_price_minor"] for item in order["items"]],
        codes,
        paid_at,
    )


def _create_admin(settings: Settings) -> bool:
    """The operator's first admin, as `ticketflow users add --role admin` creates it.

    False if it exists already: the demo was loaded before.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from api.db import unit_of_work
    from api.models import Role
    from api.services.accounts import EmailTaken, sign_up

    engine = create_engine(settings.sqlalchemy_url, poolclass=NullPool)
    try:
        with unit_of_work(engine) as session:
            sign_up(
                session,
                email=ADMIN_EMAIL,
                password=DEMO_PASSWORD,
                full_name="Platform Admin",
                role=Role.ADMIN,
            )
    except EmailTaken:
        return False
    except SQLAlchemyError as exc:
        raise DemoError(f"could not create the demo admin in the database: {exc}") from exc
    finally:
        engine.dispose()
    return True


def load(
    settings: Settings,
    *,
    out: TextIO = sys.stdout,
    seed: int = SEED,
    should_stop: Callable[[], bool] = lambda: False,
) -> Summary:
    """Load the demo through the API at `settings.api_port`; raise DemoError if it refuses."""
    base_url = f"http://{LOCALHOST}:{settings.api_port}"
    started = time.monotonic()
    rng = random.Random(seed)
    attendees = _attendees(rng)
    plans = plan_orders(rng)
    if not _create_admin(settings):
        print(f"Demo data is already loaded ({ADMIN_EMAIL} exists); nothing added.", file=out)
        print(_log_ins(base_url, attendees[0]), file=out, flush=True)
        return Summary(already_loaded=True)
    print(f"Loading demo traffic through {base_url} ...", file=out, flush=True)
    staff = [[Visitor(base_url, p) for p in org.staff] for org in ORGANIZERS]
    visitors = [Visitor(base_url, p) for p in attendees]
    finance = Visitor(base_url, FINANCE)
    admin = Visitor(base_url, Person("Platform Admin", ADMIN_EMAIL, "203.0.113.254"))
    everyone = [admin, finance, *(v for team in staff for v in team), *visitors]
    try:
        summary = _load(admin, finance, staff, visitors, plans, should_stop)
    except httpx.HTTPError as exc:
        raise DemoError(f"the API at {base_url} stopped answering: {exc!r}") from exc
    finally:
        for visitor in everyone:
            visitor.close()
    summary.seconds = time.monotonic() - started
    print(_report(summary), file=out)
    print(_log_ins(base_url, attendees[0]), file=out, flush=True)
    return summary


def _load(
    admin: Visitor,
    finance: Visitor,
    staff: list[list[Visitor]],
    visitors: list[Visitor],
    plans: list[OrderPlan],
    stop: Callable[[], bool],
) -> Summary:
    summary = Summary()
    now = datetime.now(UTC)
    team = [finance, *(v for members in staff for v in members)]
    _in_parallel([partial(_join, v) for v in team], stop)
    admin.log_in()
    found = admin.call("GET", "/admin/users", params={"email": FINANCE.email}).json()["items"]
    admin.call("PATCH", f"/admin/users/{found[0]['id']}", json={"role": "finance"})

    # The organizers build their catalogs while attendees open accounts (argon2 makes sign-up
    # and log-in the costliest requests here); each attendee shops once the catalog is up.
    catalog = Catalog()
    with ThreadPoolExecutor(len(ORGANIZERS)) as builders:
        built = [
            builders.submit(_build_organizer, i, org, staff[i], now, catalog)
            for i, org in enumerate(ORGANIZERS)
        ]

        def shop(buyer: int) -> list[Placed]:
            _join(visitors[buyer])
            for building in built:
                building.result()
            return [_buy(visitors[buyer], p, catalog) for p in plans if p.buyer == buyer]

        sessions = _in_parallel([partial(shop, b) for b in range(len(visitors))], stop)
    placed = sorted((o for orders in sessions for o in orders), key=lambda o: o.plan.number)

    # Refunds come after their payments' webhooks (sent a second after each payment), as in
    # life. (A refund racing its own payment's webhook can deadlock in the API today:
    # payments.record locks payment then order, refunds.settle order then payment.)
    refunded = [o.paid_at for o in placed if o.plan.refund and o.paid_at]
    time.sleep(max(0.0, max(refunded, default=0.0) + WEBHOOK_DELAY_S - time.monotonic()))

    # Box office and doors: each staff member works through their own queue.
    desks: dict[Visitor, list[Callable[[], dict | None]]] = defaultdict(list)
    for order in placed:
        plan = order.plan
        colleague = staff[plan.organizer][plan.number % 2]
        if plan.refund == RefundKind.FULL:
            desks[finance].append(partial(_refund, finance, order, None, "double booking"))
        elif plan.refund == RefundKind.PARTIAL:
            # One ticket back: the cheapest one's share of what was paid after any discount.
            amount = min(order.unit_prices) * order.total_minor // order.subtotal_minor
            desks[colleague].append(partial(_refund, colleague, order, amount, "one guest less"))
        for code, scanned in zip(order.ticket_codes, plan.scans, strict=False):
            if scanned:
                desks[colleague].append(partial(_check_in, colleague, code))
    done = _in_parallel([partial(_work_through, jobs) for jobs in desks.values()], stop)
    for refund in (r for results in done for r in results if r is not None):
        summary.refunded_minor[refund["currency"]] += refund["amount_minor"]

    summary.staff = sum(len(team) for team in staff)
    summary.attendees = len(visitors)
    summary.organizers = len(ORGANIZERS)
    summary.venues = sum(len(org.venues) for org in ORGANIZERS)
    summary.cities = len({v.city for org in ORGANIZERS for v in org.venues})
    all_events = [e for org in ORGANIZERS for e in org.events]
    summary.events = len(all_events)
    summary.events_on_now = sum(e.days_out == 0 for e in all_events)
    summary.ticket_types = sum(len(e.tiers) for e in all_events)
    summary.quotas = sum(e.quota is not None for e in all_events)
    summary.promo_codes = sum(len(e.promos) for e in all_events)
    summary.orders = Counter(o.plan.outcome.value for o in placed)
    summary.with_promo = sum(1 for o in placed if o.plan.promo and o.plan.paid)
    summary.tickets = sum(q for o in placed if o.plan.paid for _, q in o.plan.lines)
    summary.check_ins = sum(sum(o.plan.scans) for o in placed)
    summary.refunds = Counter(o.plan.refund.value for o in placed if o.plan.refund)
    return summary


def _work_through(jobs: list[Callable[[], dict | None]]) -> list[dict | None]:
    return [job() for job in jobs]


def _refund(who: Visitor, order: Placed, amount_minor: int | None, reason: str) -> dict:
    body = {"reason": reason} | ({"amount_minor": amount_minor} if amount_minor else {})
    return who.call(
        "POST",
        f"/orders/{order.order_id}/refunds",
        json=body,
        headers={"Idempotency-Key": f"demo-{order.plan.number}-refund"},
        expect=201,
    ).json()


def _check_in(door: Visitor, code: str) -> None:
    door.call("POST", "/check-ins", json={"code": code}, expect=201)


def _money(minor: Counter[str]) -> str:
    return ", ".join(
        f"{currency} {amount / 100:,.2f}" for currency, amount in sorted(minor.items())
    )


def _report(s: Summary) -> str:
    paid = s.orders[Outcome.PAID] + s.orders[Outcome.DECLINED_THEN_PAID]
    declined = s.orders[Outcome.DECLINED] + s.orders[Outcome.DECLINED_THEN_PAID]
    return "\n".join(
        [
            f"Demo traffic loaded in {s.seconds:.1f} s:",
            f"  accounts  1 admin, 1 finance, {s.staff} organizer staff, {s.attendees} attendees",
            f"  catalog   {s.organizers} organizers, {s.venues} venues in {s.cities} cities, "
            f"{s.events} events ({s.events_on_now} on now), {s.ticket_types} ticket types, "
            f"{s.quotas} shared quotas, {s.promo_codes} promo codes",
            f"  orders    {s.orders.total()} placed: {paid} paid ({s.with_promo} with a promo "
            f"code), {s.orders[Outcome.ABANDONED] + s.orders[Outcome.DECLINED]} holds left "
            f"pending, {s.orders[Outcome.CANCELLED]} cancelled, {declined} cards declined "
            f"({s.orders[Outcome.DECLINED_THEN_PAID]} paid with another card)",
            f"  tickets   {s.tickets} issued, {s.check_ins} checked in at the door",
            f"  refunds   {s.refunds[RefundKind.PARTIAL]} partial by organizers, "
            f"{s.refunds[RefundKind.FULL]} full by finance: {_money(s.refunded_minor)}",
        ]
    )


def _log_ins(base_url: str, attendee: Person) -> str:
    organizers = "\n".join(f"  organizer  {org.staff[0].email} ({org.name})" for org in ORGANIZERS)
    return (
        f'Demo log-ins (POST {base_url}/auth/login), all with the password "{DEMO_PASSWORD}":\n'
        f"  admin      {ADMIN_EMAIL}\n"
        f"  finance    {FINANCE.email}\n"
        f"{organizers}\n"
        f"  attendee   {attendee.email} (or any of the other {ATTENDEES - 1})"
    )
