"""A small chain for the personalization tests: two stores with category zones, a catalog,
inventory, members with and without marketing consent, and POS tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from storelens.cloud.api import principals as auth
from storelens.cloud.commerce import catalog, members, stores
from storelens.cloud.db import Database
from storelens.pseudonym import PseudonymKey

KEY = PseudonymKey("k1", bytes.fromhex("ab" * 32))
KEY_HEX = "ab" * 32

CATEGORIES = {"Handbags": "H", "Shoes": "S", "Beauty": "B"}


@dataclass
class Chain:
    db: Database
    members: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def member(self, name: str) -> dict:
        return self.members[name]


def build_chain(db: Database, *, with_tokens: bool = True) -> Chain:
    for sid, name in (("paris", "Paris"), ("lyon", "Lyon")):
        stores.upsert_store(
            db,
            stores.Store(
                id=sid, name=name, lat=48.8, lon=2.3,
                zones={"z_bags": "Handbags", "z_shoes": "Shoes", "z_beauty": "Beauty"},
            ),
        )  # fmt: skip
    products = []
    for category, prefix in CATEGORIES.items():
        for i in range(6):
            products.append(
                catalog.Product(
                    sku=f"{prefix}{i}",
                    name=f"{category} item {i}",
                    category=category,
                    brand="Acme" if i % 2 == 0 else "Zed",
                    price=10.0 * (i + 1),
                    consumable=category == "Beauty",
                )  # fmt: skip
            )
    catalog.upsert_products(db, products)
    for sid in ("paris", "lyon"):
        stores.set_inventory(
            db, sid, [stores.InventoryLevel(sku=p.sku, on_hand=20) for p in products]
        )
    chain = Chain(db)
    for n, (name, marketing) in enumerate(
        (("ann", True), ("bob", False), ("cid", True), ("dee", True))
    ):
        chain.members[name] = members.enroll(
            db, KEY,
            members.Enrollment(card_number=f"CARD{n:04d}", name=name.title(), marketing=marketing),
        )  # fmt: skip
    if with_tokens:
        chain.tokens["paris"] = auth.create_pos_token(db, "paris", "till-paris")
        chain.tokens["lyon"] = auth.create_pos_token(db, "lyon", "till-lyon")
    return chain


def swipe_at_till(client, chain: Chain, headers: dict[str, str]) -> None:  # noqa: ANN001
    """Every member of the chain swipes their card at the till of ``headers``: a POS acts
    only for members identified at it (cloud/api/member_access.py)."""
    for n in range(len(chain.members)):
        r = client.post("/api/v1/pos/members/lookup", json={"card_number": f"CARD{n:04d}"},
                        headers=headers)  # fmt: skip
        assert r.status_code == 200, r.text
