"""A realistic, deterministic demo chain: stores, catalog, members, orders, sales, stock.

Members carry a latent preference over categories (a sparse Dirichlet draw) and a shopping
rate; baskets pick categories from that preference and products by in-category popularity,
and many products have complements that are often bought with them. So the online orders and
POS sales hold the signal recommendation models look for: per-member category preference and
co-purchase structure. The same seed and end date give the same data, IDs included.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from storelens.cloud.api import principals as auth
from storelens.cloud.commerce import stores
from storelens.cloud.db import Database
from storelens.cloud.ingest import device_registry
from storelens.pseudonym import PseudonymKey

# (category, price median, consumable, nouns) - a department store's floor.
CATEGORIES: list[tuple[str, float, bool, tuple[str, ...]]] = [
    ("womenswear", 59, False, ("dress", "blouse", "skirt", "cardigan", "coat", "jeans")),
    ("menswear", 55, False, ("shirt", "chinos", "blazer", "jumper", "jacket", "polo")),
    ("shoes", 79, False, ("sneakers", "loafers", "boots", "sandals", "pumps", "trainers")),
    ("handbags", 89, False, ("tote", "crossbody bag", "clutch", "backpack", "shoulder bag")),
    ("accessories", 25, False, ("scarf", "belt", "cap", "gloves", "sunglasses", "wallet")),
    ("kids", 22, False, ("t-shirt", "hoodie", "leggings", "pyjamas", "raincoat")),
    ("beauty", 18, True, ("moisturiser", "serum", "lipstick", "mascara", "cleanser")),
    ("fragrance", 65, True, ("eau de parfum", "eau de toilette", "body mist", "cologne")),
    ("jewelry", 45, False, ("necklace", "earrings", "bracelet", "ring", "watch")),
    ("sportswear", 35, False, ("running tights", "sports bra", "track jacket", "shorts")),
    ("home", 29, False, ("candle", "cushion", "throw", "vase", "towel set", "mug")),
    ("grocery", 6, True, ("coffee beans", "tea", "chocolate", "olive oil", "biscuits")),
]
BRANDS = ("Aurel", "Borée", "Calanque", "Dune", "Estran", "Falaise", "Garrigue", "Halage",
          "Isard", "Jasmin", "Karst", "Lavande", "Mistral", "Noroît")  # fmt: skip
ADJECTIVES = ("classic", "organic", "slim", "soft", "linen", "wool", "leather", "recycled",
              "light", "everyday", "premium", "travel")  # fmt: skip
FIRST = ("Ana", "Louis", "Emma", "Hugo", "Jade", "Leo", "Lina", "Noah", "Rose", "Tom", "Zoe",
         "Adam", "Chloe", "Jules", "Mila", "Paul", "Sara", "Yanis", "Alice", "Nina")  # fmt: skip
LAST = ("Martin", "Bernard", "Dubois", "Durand", "Lefebvre", "Moreau", "Laurent", "Simon",
        "Michel", "Garcia", "Roux", "Fournier", "Girard", "Bonnet", "Dupont")  # fmt: skip

# Zones of the sample camera (firmware_config/sample.yaml) and the categories shown there.
SAMPLE_STORE, SAMPLE_DEVICE = "sample-store", "sample-edge"  # firmware_config/sample.yaml
SAMPLE_ZONES = {"west_walk": "entrance", "plaza": "promotions", "east_road": "checkout"}
STORE_ZONES = {"entrance_area": "entrance", **{c: c for c, *_ in CATEGORIES}}


@dataclass(frozen=True)
class StoreSpec:
    id: str
    name: str
    address: str
    lat: float
    lon: float
    capacity: int
    priority: int


STORES = (
    StoreSpec("sample-store", "Rivoli", "112 rue de Rivoli, 75001 Paris", 48.8606, 2.3444, 60, 2),
    StoreSpec("paris-bastille", "Bastille", "5 rue du Faubourg Saint-Antoine, 75011 Paris",
              48.8532, 2.3701, 45, 1),
    StoreSpec("lyon-part-dieu", "Part-Dieu", "17 rue du Docteur Bouchut, 69003 Lyon",
              45.7610, 4.8560, 40, 1),
    StoreSpec("lille-centre", "Lille Centre", "31 rue Neuve, 59000 Lille", 50.6365, 3.0635, 30, 0),
    StoreSpec("bordeaux-sainte-catherine", "Sainte-Catherine",
              "60 rue Sainte-Catherine, 33000 Bordeaux", 44.8399, -0.5732, 30, 0),
)  # fmt: skip


@dataclass
class SeedResult:
    stores: int = 0
    products: int = 0
    members: int = 0
    accounts: int = 0
    online_orders: int = 0
    pos_sales: int = 0
    inventory_rows: int = 0
    instore_events: int = 0
    seconds: float = 0.0
    credentials: dict[str, Any] = field(default_factory=dict)


class SeedError(RuntimeError):
    pass


def demo_key(seed: int) -> PseudonymKey:
    """A pseudonym key derived from the seed, for demos without a configured key only."""
    return PseudonymKey("demo", hashlib.sha256(f"storelens-demo-key-{seed}".encode()).digest())


def seed(db: Database, *, seed: int = 42, key: PseudonymKey | None = None, members: int = 3000,
         days: int = 180, end: date | None = None, instore_days: int = 0,
         admin_password: str | None = None) -> SeedResult:  # fmt: skip
    """Fill an empty database. Raises SeedError when stores already exist."""
    if db.scalar("SELECT count(*) FROM stores"):
        raise SeedError("the database already has stores; seed a fresh database")
    started = time.perf_counter()
    key = key or demo_key(seed)
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    end = end or datetime.now(UTC).date()
    t_end = datetime.combine(end, datetime.min.time(), UTC).timestamp()
    t_start = t_end - days * 86400
    result = SeedResult()

    with db.transaction():
        result.stores = _stores(db)
        products = _catalog(db, rng, prng, t_end)
        result.products = len(products)
        people = _members(db, rng, prng, key, members, t_start)
        result.members = len(people)
        result.accounts = sum(1 for p in people if p["account"]) + _guest_accounts(
            db, prng, t_start
        )
        orders, sales = _history(db, rng, prng, products, people, t_start, t_end)
        result.online_orders, result.pos_sales = orders, sales
        result.inventory_rows = _inventory(db, rng, products, t_end)
        # Only the sample video's device: the other stores' boxes exist once in-store traffic
        # is seeded for them (a registered box that never reported reads "never seen").
        device_registry.register_device(db, SAMPLE_STORE, SAMPLE_DEVICE, "sample video device")
        _offer_templates(db)
    password = admin_password or secrets.token_urlsafe(12)
    auth.create_user(db, "admin", password, "admin")
    pos_tokens = {s.id: auth.create_pos_token(db, s.id, "till-1") for s in STORES}
    if instore_days:
        from storelens.tools.seed.instore import seed_instore

        counts = seed_instore(db, days=instore_days, end=end - timedelta(days=1), seed=seed,
                              until=t_end, devices={SAMPLE_STORE: SAMPLE_DEVICE})  # fmt: skip
        result.instore_events = sum(counts.values())
    result.credentials = {
        "admin": {"username": "admin", "password": password},
        "pos_tokens": pos_tokens,
        "pseudonym_key": {"key_id": key.key_id, "hex": key.secret.hex()},
        "demo_cards": _story_cards(people),
    }
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def _story_cards(people: list[dict[str, Any]], n: int = 5) -> list[str]:
    """Cards of members who show the whole story at the till: tracked (their swipe links to
    their visit), marketing consent and outside the offers holdout (they get offers). A
    newcomer tries the first card first; an opted-out one would show "No offers"."""
    from storelens.cloud.personalization.offers import OfferPolicy, in_holdout

    policy = OfferPolicy()
    story = [
        p["card"]
        for p in people
        if p["tracking"] and p["marketing"] and not in_holdout(p["id"], policy)
    ]
    return story[:n]


def _offer_templates(db: Database) -> None:
    """Offers clerks can show at the till (the schema's default templates are issued by
    purchases and scores, never shown), so the POS has offers to propose."""
    from storelens.cloud.personalization import coupons, offers

    for template in (
        offers.OfferTemplate(
            id="basket-10", name="10% off your basket today",
            description="For members, on today's basket.",
            terms=coupons.DiscountTerms(kind="percent", value=10), coupon_days=1,
        ),
        offers.OfferTemplate(
            id="shoes-15", name="15% off shoes", description="You spent time at our shoes today.",
            terms=coupons.DiscountTerms(kind="percent", value=15, scope="category",
                                        scope_value="shoes"),
            coupon_days=7, audience="category_affinity", audience_value="shoes",
        ),
        offers.OfferTemplate(
            id="gold-5", name="5 off for gold members",
            terms=coupons.DiscountTerms(kind="amount", value=5), coupon_days=14,
            audience="tier", audience_value="gold",
        ),
    ):  # fmt: skip
        offers.save_template(db, template)


def _stores(db: Database) -> int:
    for spec in STORES:
        zones = dict(STORE_ZONES)
        if spec.id == SAMPLE_STORE:
            zones.update(SAMPLE_ZONES)
        stores.upsert_store(
            db,
            stores.Store(id=spec.id, name=spec.name, address=spec.address, lat=spec.lat,
                         lon=spec.lon, timezone="Europe/Paris", zones=zones,
                         fulfillment_capacity=spec.capacity, acceptance_deadline_min=120,
                         priority=spec.priority),
        )  # fmt: skip
    return len(STORES)


def _catalog(db: Database, rng: np.random.Generator, prng: random.Random,
             now: float) -> list[dict[str, Any]]:  # fmt: skip
    products: list[dict[str, Any]] = []
    per_category = 34
    for c_index, (category, median, consumable, nouns) in enumerate(CATEGORIES):
        weights = 1.0 / np.arange(1, per_category + 1) ** 0.9  # Zipf-like popularity
        rng.shuffle(weights)
        for i in range(per_category):
            noun = nouns[i % len(nouns)]
            brand = BRANDS[(c_index * 5 + i * 3) % len(BRANDS)]
            price = round(float(median * math.exp(rng.normal(0, 0.35))), 2) - 0.01
            products.append({
                "sku": f"{category[:3].upper()}-{i + 1:04d}",
                "name": f"{brand} {prng.choice(ADJECTIVES)} {noun}",
                "category": category, "brand": brand, "price": max(price, 0.99),
                "image_url": f"https://img.storelens.example/{category}/{i + 1:04d}.jpg",
                "consumable": int(consumable), "active": 1, "updated_at": now,
                "_weight": float(weights[i]),
            })  # fmt: skip
    # Complements: a product "goes with" 1-2 products of other categories (shoes -> socks).
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for p in products:
        by_cat.setdefault(p["category"], []).append(p)
    cats = [c for c, *_ in CATEGORIES]
    for p in products:
        others = [c for c in cats if c != p["category"]]
        p["_complements"] = [
            prng.choice(by_cat[prng.choice(others)])["sku"] for _ in range(prng.randint(1, 2))
        ]
    db.insert_many(
        "products", [{k: v for k, v in p.items() if not k.startswith("_")} for p in products]
    )
    return products


def _members(db: Database, rng: np.random.Generator, prng: random.Random, key: PseudonymKey,
             count: int, t_start: float) -> list[dict[str, Any]]:  # fmt: skip
    people, rows, consent, accounts = [], [], [], []
    n_cat = len(CATEGORIES)
    tiers = ("standard", "silver", "gold", "platinum")
    for i in range(count):
        card = f"{4000_0000_0000 + prng.randrange(10**11):012d}"
        member_id = f"m_{prng.getrandbits(64):016x}"
        created = t_start - prng.uniform(0, 3 * 365 * 86400)
        pref = rng.dirichlet(np.full(n_cat, 0.2))  # sparse: 1-3 favourite categories
        tier = tiers[min(3, int(rng.exponential(0.7)))]
        tracking = prng.random() < 0.9
        marketing = prng.random() < 0.6
        account = f"acct-{i + 1:06d}" if prng.random() < 0.7 else None
        name = f"{prng.choice(FIRST)} {prng.choice(LAST)}"
        people.append({
            "id": member_id, "card": card, "pref": pref, "account": account,
            "home": prng.choices(STORES, weights=(4, 3, 3, 2, 2))[0].id,
            "rate": float(rng.gamma(2.0, 1.0)) * (1 + tiers.index(tier) * 0.4),
            "online_share": prng.uniform(0.1, 0.7) if account else 0.0,
            "tracking": tracking, "marketing": marketing,
        })  # fmt: skip
        rows.append((member_id, key.token(card), key.key_id, name, tier, created))
        consent.append((member_id, int(tracking), int(marketing), created))
        if account:
            email = f"{name.split()[0].lower()}.{i + 1}@example.com"
            accounts.append((account, member_id, email, name, created, created))
    db.executemany(
        "INSERT INTO members (id, token, key_id, name, tier, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.executemany(
        "INSERT INTO member_consent (member_id, tracking, marketing, updated_at)"
        " VALUES (?, ?, ?, ?)",
        consent,
    )
    db.executemany(
        "INSERT INTO customer_accounts (id, member_id, email, name, created_at, linked_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        accounts,
    )
    db.execute("UPDATE consent_state SET version = version + 1 WHERE id = 1")
    return people


def _guest_accounts(db: Database, prng: random.Random, t_start: float) -> int:
    rows = [(f"guest-{i + 1:05d}", None, None, None, t_start, None) for i in range(300)]
    db.executemany(
        "INSERT INTO customer_accounts (id, member_id, email, name, created_at, linked_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)


class _Basket:
    """Draws baskets for one member: categories by preference, SKUs by popularity, plus
    complements of what is already in the basket. Uses `random` with cumulative weights:
    a numpy call per item is ten times slower at this size."""

    def __init__(self, products: list[dict[str, Any]], prng: random.Random) -> None:
        self.prng = prng
        self.by_cat: list[tuple[list[dict[str, Any]], list[float]]] = []
        for cat, *_ in CATEGORIES:
            items = [p for p in products if p["category"] == cat]
            self.by_cat.append((items, list(np.cumsum([p["_weight"] for p in items]))))
        self.by_sku = {p["sku"]: p for p in products}
        self.cat_index = list(range(len(CATEGORIES)))

    def draw(self, cum_pref: list[float]) -> list[tuple[str, int, float]]:
        r = self.prng
        size = 1 + _poisson(r, 1.3)
        lines: dict[str, int] = {}
        for cat in r.choices(self.cat_index, cum_weights=cum_pref, k=size):
            items, cum = self.by_cat[cat]
            sku = r.choices(items, cum_weights=cum)[0]["sku"]
            lines[sku] = lines.get(sku, 0) + 1
        for sku in list(lines):
            for comp in self.by_sku[sku]["_complements"]:
                if r.random() < 0.35:
                    lines[comp] = lines.get(comp, 0) + 1
        out = []
        for sku, qty in lines.items():
            p = self.by_sku[sku]
            qty = qty + (_poisson(r, 0.8) if p["consumable"] else 0)
            out.append((sku, qty, p["price"]))
        return out


def _poisson(r: random.Random, lam: float) -> int:
    # Knuth's method: exact and fast for the small means used here.
    limit, k, prod = math.exp(-lam), 0, r.random()
    while prod > limit:
        k += 1
        prod *= r.random()
    return k


def _history(db: Database, rng: np.random.Generator, prng: random.Random,
             products: list[dict[str, Any]], people: list[dict[str, Any]],
             t_start: float, t_end: float) -> tuple[int, int]:  # fmt: skip
    basket = _Basket(products, prng)
    span = t_end - t_start
    store_ids = [s.id for s in STORES]
    coords = {s.id: (s.lat, s.lon) for s in STORES}
    orders, order_items, sales, sale_items = [], [], [], []
    order_seq = sale_seq = 0

    n_days = int(span // 86400)

    def shop_time() -> float:
        return t_start + prng.randrange(n_days) * 86400 + 3600 * prng.uniform(9, 20)

    for person in people:
        n = int(rng.poisson(person["rate"] * span / (30 * 86400)))
        cum_pref = list(np.cumsum(person["pref"]))
        for _ in range(n):
            lines = basket.draw(cum_pref)
            total = round(sum(q * p for _, q, p in lines), 2)
            ts = shop_time()
            if person["account"] and prng.random() < person["online_share"]:
                order_seq += 1
                oid = f"o_{prng.getrandbits(64):016x}"
                pickup = prng.random() < 0.25
                lat, lon = coords[person["home"]]
                age = t_end - ts
                status = (
                    ("delivered" if not pickup else "picked_up") if age > 5 * 86400 else "received"
                )
                orders.append((
                    oid, f"seed-{order_seq}", None, f"W{100000 + order_seq}", person["account"],
                    person["id"], status, "pickup" if pickup else "ship",
                    person["home"] if pickup else None, 1,
                    None if pickup else "Member " + person["id"][-4:],
                    None if pickup else f"{prng.randint(1, 150)} rue du Commerce",
                    None, None, "FR",
                    None if pickup else round(lat + float(rng.normal(0, 0.05)), 5),
                    None if pickup else round(lon + float(rng.normal(0, 0.07)), 5),
                    total, "EUR", ts, ts,
                ))  # fmt: skip
                order_items += [(oid, i, s, q, p) for i, (s, q, p) in enumerate(lines, 1)]
            else:
                sale_seq += 1
                sid = f"s_{prng.getrandbits(64):016x}"
                store = person["home"] if prng.random() < 0.85 else prng.choice(store_ids)
                sales.append((sid, store, "till-1", ts, person["id"], total, ts))
                sale_items += [(sid, i, s, q, p) for i, (s, q, p) in enumerate(lines, 1)]
    # Anonymous walk-in sales: popularity only, no member.
    flat = [float(i + 1) for i in range(len(CATEGORIES))]
    for _ in range(len(sales) // 2):
        lines = basket.draw(flat)
        ts = shop_time()
        sid = f"s_{prng.getrandbits(64):016x}"
        total = round(sum(q * p for _, q, p in lines), 2)
        sales.append((sid, prng.choice(store_ids), "till-1", ts, None, total, ts))
        sale_items += [(sid, i, s, q, p) for i, (s, q, p) in enumerate(lines, 1)]
    db.executemany(
        "INSERT INTO online_orders (id, idempotency_key, request_sha256, external_id,"
        " customer_account, member_id, status, fulfillment_type, pickup_store, allow_brokering,"
        " ship_name, ship_address, ship_city, ship_postcode, ship_country, ship_lat, ship_lon,"
        " total, currency, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        orders,
    )
    db.executemany(
        "INSERT INTO online_order_items (order_id, line, sku, qty, unit_price)"
        " VALUES (?, ?, ?, ?, ?)",
        order_items,
    )
    db.executemany(
        "INSERT INTO pos_sales (id, store, device, ts, member_id, total, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        sales,
    )
    db.executemany(
        "INSERT INTO pos_sale_items (sale_id, line, sku, qty, unit_price) VALUES (?, ?, ?, ?, ?)",
        sale_items,
    )
    return len(orders), len(sales)


def _inventory(db: Database, rng: np.random.Generator, products: list[dict[str, Any]],
               now: float) -> int:  # fmt: skip
    rows = []
    for spec in STORES:
        for p_index, p in enumerate(products):
            if rng.random() < 0.15:  # not every store carries everything
                continue
            depth = 6 if p["consumable"] else 3
            on_hand = int(rng.poisson(depth * (1.5 if spec.priority else 1.0)))
            aisle = f"A{(p_index // 34) + 1:02d}-{(p_index % 34) // 6 + 1}"
            rows.append((spec.id, p["sku"], on_hand, 0, 1 if on_hand > 4 else 0, aisle, now))
    db.executemany(
        "INSERT INTO inventory (store, sku, on_hand, reserved, safety_stock, shelf_location,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)
