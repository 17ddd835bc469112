"""The two web faces in real headless Chromium against a seeded service: /ops charts, filters
and CSV downloads; /pos member lookup, suggestions, offers, coupons, live tasks to shipped."""

from __future__ import annotations

import csv
import io
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import REPO, free_port, wait_port

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PLOTTED = [
    "footfall-hourly", "footfall-daily", "peak-hours", "dwell", "dwell-hist", "heatmap", "flows",
    "paths", "conversion", "conversion-hourly", "member-share", "coupon-uplift",
]  # fmt: skip
ADMIN_PASSWORD = "ops-browser-test-1"
STORE = "paris-bastille"


@dataclass
class Service:
    url: str
    db: object
    admin: dict[str, str]
    pos_token: str
    card: str
    member_id: str
    expired_code: str

    def api(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token or self.admin['token']}",
            **kw.pop("headers", {}),
        }
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} not installed")


def _visit_today(db, store: str, token: str, key_id: str) -> None:
    """One finished visit of the member 20 minutes ago, stored the way ingest stores it."""
    from storelens.cloud.ingest import events
    from storelens.contract.events import VisitEnded, VisitStarted, ZoneVisit

    now = datetime.now(UTC)
    start, vid, dev = now - timedelta(minutes=20), uuid.uuid4(), f"{store}-edge1"
    person = {"camera": "cam1", "visit_id": vid, "device": dev}
    link = {"member": token, "key_id": key_id, **person}
    evs = [
        VisitStarted(seq=10**9, ts=start, **person),
        ZoneVisit(seq=10**9 + 1, ts=start + timedelta(minutes=6), zone="handbags", entered_at=start,
                  exited_at=start + timedelta(minutes=6), dwell_s=360.0, **link),
        VisitEnded(seq=10**9 + 2, ts=now - timedelta(minutes=10), started_at=start, duration_s=600,
                   zones=["handbags"], path=[[2.0, 3.0, 0.0], [6.0, 4.0, 600.0]], **link),
    ]  # fmt: skip
    events.store_events(db, [events.event_row(store, e, time.time(), token) for e in evs])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    _require_chromium()
    import uvicorn

    from storelens.cloud.api import principals as auth
    from storelens.cloud.api.app import create_app
    from storelens.cloud.commerce import members
    from storelens.cloud.db import connect
    from storelens.cloud.personalization import coupons, offers
    from storelens.cloud.settings import Settings
    from storelens.tools.seed import chain as seed

    tmp = tmp_path_factory.mktemp("web")
    url = f"sqlite:///{tmp / 'storelens.db'}"
    db = connect(url)
    result = seed.seed(db, members=300, days=30, instore_days=14, admin_password=ADMIN_PASSWORD)
    key_file = tmp / "pseudonym.key"
    key_file.write_text(result.credentials["pseudonym_key"]["hex"])
    key = seed.demo_key(42)
    policy = offers.OfferPolicy()
    # A demo card whose member may get offers (the seed draws consent at random).
    for card in result.credentials["demo_cards"]:
        member = members.member_by_card(db, key, card)
        if not offers.in_holdout(member["id"], policy):
            break
    members.set_consent(db, member["id"], members.Consent(tracking=True, marketing=True))
    _visit_today(db, STORE, member["token"], member["key_id"])
    offers.save_template(db, offers.OfferTemplate(
        id="welcome10", name="10% off your basket", description="Thank you for shopping with us",
        terms=coupons.DiscountTerms(kind="percent", value=10), coupon_days=14, priority=2,
    ))  # fmt: skip
    offers.save_template(db, offers.OfferTemplate(
        id="scarf5", name="5 off a scarf", terms=coupons.DiscountTerms(kind="amount", value=5),
        coupon_days=7, priority=1,
    ))  # fmt: skip
    expired = coupons.issue(db, member["id"], coupons.DiscountTerms(kind="amount", value=5),
                            valid_days=1, source="offer", now=time.time() - 3 * 86400)  # fmt: skip

    settings = Settings(db_url=url, pseudonym_key_id=key.key_id, pseudonym_key_file=key_file)
    app = create_app(settings, db=db)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port(port, 30)
    base = f"http://127.0.0.1:{port}"
    admin_token = auth.login(db, "admin", ADMIN_PASSWORD, 3600)
    yield Service(
        url=base, db=db,
        admin={"username": "admin", "password": ADMIN_PASSWORD, "token": admin_token},
        pos_token=result.credentials["pos_tokens"][STORE], card=card, member_id=member["id"],
        expired_code=expired["code"],
    )  # fmt: skip
    server.should_exit = True
    thread.join(10)
    db.close()


@pytest.fixture(scope="module")
def browser(service: Service):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_for(browser, service: Service):
    contexts = []

    def make(**kw):
        ctx = browser.new_context(accept_downloads=True, **kw)
        contexts.append(ctx)
        page = ctx.new_page()
        external: list[str] = []
        page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith((service.url, "data:", "blob:"))
                else external.append(r.url)
            ),
        )
        page.external = external  # type: ignore[attr-defined]
        # The pages send a Content-Security-Policy: anything it blocks shows up here.
        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text)
                if "Content Security Policy" in m.text else None)  # fmt: skip
        page.csp_blocked = blocked  # type: ignore[attr-defined]
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def _plotted_points(page, chart: str) -> int:
    return page.evaluate(
        """(id) => { const gd = document.getElementById(id);
            if (!gd || !gd.data || !gd.querySelector('.main-svg')) return 0;
            const size = (t) => (t.z || t.y || t.x || []).length;
            return gd.data.reduce((n, t) => n + size(t), 0); }""",
        f"plot-{chart}",
    )


def _kpi(page, name: str) -> str:
    return page.locator(f'.kpi[data-kpi="{name}"] .value').inner_text()


def test_ops_dashboard_charts_filters_and_csv(service: Service, page_for, artifacts: Path) -> None:
    page = page_for(viewport={"width": 1400, "height": 1000})
    response = page.goto(service.url + "/ops")
    assert response is not None and response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.fill("#login input[name=username]", "admin")
    page.fill("#login input[name=password]", "wrong-password")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:has-text('Wrong user name or password')")
    page.fill("#login input[name=password]", ADMIN_PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_selector('section[data-chart="devices"][data-state="ready"]', timeout=30_000)
    page.wait_for_function("() => !document.body.dataset.loading", timeout=30_000)
    page.screenshot(path=str(artifacts / "ops.png"), full_page=True)
    for chart in PLOTTED:
        assert (
            page.locator(f'section[data-chart="{chart}"]').get_attribute("data-state") == "ready"
        ), chart
        assert _plotted_points(page, chart) > 0, chart
    # The scoring plans module (static/ops-scoring.js): its own card, the report's numbers.
    page.wait_for_selector('section[data-chart="scoring-plans"][data-state="ready"]')
    caption = page.locator('section[data-chart="scoring-plans"] .caption').inner_text()
    for plan in service.api("GET", "/api/v1/scoring/report").json()["plans"]:
        assert f"{plan['plan']}: {plan['members']} members" in caption
    # One box per store (the sample store's is the sample device): no phantom, none unseen.
    assert page.locator("#plot-devices tbody tr").count() == 5
    assert page.locator("#plot-devices .health-never-seen").count() == 0
    assert page.locator("#plot-devices .health-degraded").count() >= 1  # the seeded camera outage

    start, end = page.input_value("input[name=start]"), page.input_value("input[name=end]")
    params = {"start": start, "end": end}
    # The default period ends today on the stores' clock (Paris), whatever the browser's is.
    assert end == datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    api = service.api("GET", "/api/v1/analytics/footfall-daily", params=params).json()
    all_visitors = api["comparison"]["totals"]["visitors"]
    assert all_visitors > 0 and _kpi(page, "visitors") == f"{all_visitors:,}"

    # filters: one store, afternoon hours -> the numbers follow the API's for that scope
    for box in page.locator("input[name=store]").all():
        if box.get_attribute("value") != STORE:
            box.uncheck()
    page.select_option("select[name=hour_from]", "14")
    page.select_option("select[name=hour_to]", "18")
    page.click("#filters button[type=submit]")
    page.wait_for_function("() => !document.body.dataset.loading", timeout=30_000)
    narrow = {**params, "stores": STORE, "hour_from": 14, "hour_to": 18}
    api = service.api("GET", "/api/v1/analytics/footfall-daily", params=narrow).json()
    visitors = api["comparison"]["totals"]["visitors"]
    assert 0 < visitors < all_visitors
    assert _kpi(page, "visitors") == f"{visitors:,}"
    hours = page.evaluate("document.getElementById('plot-peak-hours').data[0].x")
    assert hours == [14, 15, 16, 17]
    assert page.locator(".heat-store").input_value() == STORE

    # every chart's CSV download is the API's rows
    for chart in ("footfall-daily", "dwell", "conversion", "devices"):
        with page.expect_download() as download:
            page.click(f'section[data-chart="{chart}"] button.csv')
        text = Path(download.value.path()).read_text()
        assert download.value.suggested_filename == f"storelens-{chart}-{start}-{end}.csv"
        body = service.api("GET", f"/api/v1/analytics/{chart}", params=narrow).json()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and len(rows) == len(body["rows"]), chart
        expected = [
            {c: "" if r[c] is None else str(r[c]) for c in body["columns"]} for r in body["rows"]
        ]
        if chart == "devices":  # seconds since seen moves on between the two requests
            for r in rows + expected:
                r.pop("seconds_since_seen")
        assert rows == expected, chart

    # A period with nothing in it says so in words (plotly would draw axes from -1 to 1).
    page.fill("input[name=start]", "2020-01-01")
    page.fill("input[name=end]", "2020-01-07")
    page.click("#filters button[type=submit]")
    page.wait_for_function("() => !document.body.dataset.loading", timeout=30_000)
    for chart in (c for c in PLOTTED if c != "coupon-uplift"):  # members exist regardless
        box = page.locator(f'section[data-chart="{chart}"]')
        assert box.get_attribute("data-empty") == "1", chart
        assert box.locator(".plot p.empty").inner_text().startswith("No "), chart
        assert _plotted_points(page, chart) == 0, chart
    # The scoring plans module reloads on its own: no contacts then either, said in words.
    page.wait_for_selector('section[data-chart="scoring-plans"][data-empty="1"] .plot p.empty')
    assert page.external == []  # type: ignore[attr-defined]
    assert page.csp_blocked == []  # type: ignore[attr-defined]


def test_pos_member_coupons_and_live_fulfillment(
    service: Service, page_for, artifacts: Path
) -> None:
    page = page_for(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(service.url + "/pos")
    page.fill("#signin input[name=token]", "not-a-token")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin-error:has-text('not valid')")
    page.fill("#signin input[name=token]", service.pos_token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#who:has-text('paris-bastille')")
    page.wait_for_selector("#push.live", timeout=15_000)

    # the web shop reported a product view and a cart add: "viewed online, in stock here"
    stock = service.api("GET", f"/api/v1/stores/{STORE}/inventory", params={"limit": 2}).json()
    viewed, carted = (row["sku"] for row in stock["items"])
    online = [
        {"id": f"web-{uuid.uuid4()}", "type": "product_viewed", "member_id": service.member_id,
         "sku": viewed},
        {"id": f"web-{uuid.uuid4()}", "type": "cart_add", "member_id": service.member_id,
         "sku": carted},
    ]  # fmt: skip
    r = service.api("POST", "/api/v1/interactions", json={"interactions": online})
    assert [x["outcome"] for x in r.json()["results"]] == ["recorded", "recorded"], r.text

    # member lookup by card: name, tier, today's visit here, suggestions with pictures
    page.fill("#lookup input[name=q]", "0000 0000 0000")
    page.click("#lookup button")
    page.wait_for_selector("#notice:has-text('No member holds this card')")
    page.fill("#lookup input[name=q]", service.card)
    page.click("#lookup button")
    page.wait_for_selector(f'#member[data-member="{service.member_id}"]')
    assert page.locator("#member-tier").inner_text().lower() in {
        "standard",
        "silver",
        "gold",
        "platinum",
    }
    page.wait_for_selector("#activity li:has-text('handbags: 6 min')")
    card = service.api("GET", f"/api/v1/pos/members/{service.member_id}", token=service.pos_token)
    here = {r["sku"]: r["in_stock_here"] for r in card.json()["online_interest"]}
    assert set(here) == {viewed, carted}
    for sku, words in ((viewed, "viewed online"), (carted, "in cart online")):
        line = page.locator(f'#online li.viewed[data-sku="{sku}"]').inner_text()
        assert words in line and ("not in stock here" in line) != here[sku], line
    page.wait_for_selector("#recs li.rec", timeout=20_000)
    recs = page.locator("#recs li.rec")
    assert recs.count() >= 3
    assert all(recs.nth(i).locator(".why").inner_text().strip() for i in range(recs.count()))
    page.wait_for_function(
        "[...document.querySelectorAll('#recs img')].every(i => i.complete && i.naturalWidth > 0)"
    )

    # an offer shown issues a coupon; an expired coupon is refused in plain words
    page.wait_for_selector('.offer[data-offer="welcome10"]')
    page.click('.offer[data-offer="welcome10"] button.shown')
    page.wait_for_selector('.offer[data-state="shown"] .result:has-text("Coupon")')
    code = page.locator('.offer[data-state="shown"] .result').inner_text().split()[1].rstrip(":")
    page.click('.offer[data-offer="scarf5"] button.declined')
    page.wait_for_selector('.offer[data-offer="scarf5"][data-state="declined"]')
    recs.nth(0).locator("button").click()
    recs.nth(1).locator("button").click()
    page.fill("#basket input[name=coupon]", service.expired_code)
    page.click("#coupon-check")
    page.wait_for_selector("#basket-result:has-text('This coupon has expired.')")
    page.fill("#basket input[name=coupon]", code)
    page.click("#coupon-check")
    page.wait_for_selector("#basket-result:has-text('Coupon OK')")
    page.click("#basket button[type=submit]")
    page.wait_for_selector("#basket-result[data-sale]")
    sale_id = page.locator("#basket-result").get_attribute("data-sale")
    redeemed = service.db.query_one("SELECT redeemed_sale_id FROM coupons WHERE code = ?", (code,))
    assert redeemed["redeemed_sale_id"] == sale_id
    # high-intent alert pushed on the scoring engine's channel
    from storelens.cloud.services import served_by

    alert = {"member_id": service.member_id, "name": "Test Member", "tier": "gold",
             "message": "member in handbags for 6 min, score 42"}  # fmt: skip
    served_by(service.db).push.publish(STORE, "member_alert", alert)  # the app's hub
    page.wait_for_selector("#alert:has-text('High-intent member in store: Test Member')")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "pos.png"))  # what the clerk's phone shows
    page.click("#alert-close")

    # the same coupon a second time is refused in plain words
    page.fill("#basket input[name=coupon]", code)
    page.fill("#basket input[name=sku]", recs.nth(0).get_attribute("data-sku"))
    page.click("#basket-add")
    page.click("#basket button[type=submit]")
    page.wait_for_selector("#basket-result:has-text('already been used')")

    # an online order arrives: the task appears without reload and is walked to shipped
    page.click("[data-tab=tasks]")
    store = service.api("GET", f"/api/v1/stores/{STORE}").json()
    stock = service.db.query_one(
        "SELECT sku FROM inventory WHERE store = ?"
        " ORDER BY on_hand - reserved - safety_stock DESC LIMIT 1",
        (STORE,),
    )
    order = {
        "fulfillment_type": "ship", "items": [{"sku": stock["sku"], "qty": 1}],
        "shipping": {"name": "A. Customer", "address": "1 rue de Lappe", "city": "Paris",
                     "country": "FR", "lat": store["lat"], "lon": store["lon"]},
    }  # fmt: skip

    def place_order() -> str:
        key = {"Idempotency-Key": f"browser-{uuid.uuid4()}"}
        made = service.api("POST", "/api/v1/orders", json=order, headers=key)
        assert made.status_code == 201, made.text
        return made.json()["id"]

    task = page.locator(f'.task[data-order="{place_order()}"]')
    task.wait_for(timeout=15_000)
    assert "Accept by" in task.locator(".deadline").inner_text()
    task_id = task.get_attribute("data-task")

    # another till takes it in the instant this clerk taps Accept: a plain-words 409
    other = service.api(
        "POST", "/api/v1/auth/pos-tokens", json={"store": STORE, "device_name": "till-2"}
    ).json()

    def other_till_first(route) -> None:
        taken = service.api(
            "POST", f"/api/v1/fulfillment/tasks/{task_id}/accept", token=other["token"], json={}
        )
        assert taken.status_code == 200, taken.text
        route.continue_()

    page.route(f"**/api/v1/fulfillment/tasks/{task_id}/accept", other_till_first)
    task.locator("button[data-action=accept]").click()
    task.locator(".result:has-text('Someone else already handled this order')").wait_for()
    page.wait_for_selector(f'.task[data-task="{task_id}"][data-state="accepted"]')
    page.locator(f'.task[data-task="{task_id}"] button[data-action=pick]').click()
    page.wait_for_selector(f'.task[data-task="{task_id}"][data-state="picked"]')
    page.locator(f'.task[data-task="{task_id}"] button[data-action=pack]').click()
    page.wait_for_selector(f'.task[data-task="{task_id}"][data-state="packed"]')
    page.locator(f'.task[data-task="{task_id}"] input[aria-label="Tracking number"]').fill(
        "6A12345678901"
    )
    page.locator(f'.task[data-task="{task_id}"] button[data-action=ship]').click()
    page.wait_for_selector(
        f'.task[data-task="{task_id}"][data-state="shipped"]:has-text("6A12345678901")'
    )
    row = service.db.query_one(
        "SELECT state, tracking_number FROM fulfillment_tasks WHERE id = ?", (task_id,)
    )
    assert row == {"state": "shipped", "tracking_number": "6A12345678901"}

    # a damaged item: rejected with that reason, the order goes to another store
    second = page.locator(f'.task[data-order="{place_order()}"]')
    second.wait_for(timeout=15_000)
    second.locator('select[aria-label="Reason"]').select_option("damaged")
    second.locator("button[data-action=reject]").click()
    page.wait_for_selector(
        f'.task[data-task="{second.get_attribute("data-task")}"][data-state="rejected"]'
    )
    rejected = service.db.query_one(
        "SELECT state, reason FROM fulfillment_tasks WHERE id = ?",
        (second.get_attribute("data-task"),),
    )
    assert rejected["state"] == "rejected" and "damaged" in rejected["reason"]

    # network lost: said in plain words, the push channel shows it reconnects, then comes back
    page.context.set_offline(True)
    page.wait_for_selector("#notice:has-text('Network lost')")
    page.wait_for_selector("#push.reconnecting")
    page.context.set_offline(False)
    page.wait_for_selector("#push.live", timeout=20_000)
    assert page.external == []  # type: ignore[attr-defined]
    assert page.csp_blocked == []  # type: ignore[attr-defined]


def test_api_docs_render_offline(service: Service, page_for) -> None:
    """/docs and /redoc load their assets from the app (a store network may have no internet):
    with every other address unreachable they still show the API's operations."""
    page = page_for(viewport={"width": 1200, "height": 900})
    page.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith(service.url) else route.abort()
        ),
    )
    page.goto(service.url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() > 50
    assert "storelens cloud API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.external == []  # type: ignore[attr-defined]
    # ReDoc renders too; only its "powered by" logo points outside, and it is not needed.
    page.goto(service.url + "/redoc")
    page.wait_for_selector("h1:has-text('storelens cloud API')", timeout=30_000)
    assert [u for u in page.external if "logo" not in u] == []  # type: ignore[attr-defined]


def test_screenshots_are_committed_docs() -> None:
    for name in ("ops.png", "pos.png"):
        assert (REPO / "docs" / name).stat().st_size > 10_000, name
