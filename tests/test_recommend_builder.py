"""The recommendation builder is its own process: it builds and stores the model, the API only
loads the newest stored one (with the hand-set blend as a fallback until one exists)."""

from __future__ import annotations

import time

from personalization_chain import build_chain
from typer.testing import CliRunner

from storelens.cloud.commerce import sales
from storelens.cloud.personalization.recommend import RecommendationService, artifacts
from storelens.cloud.personalization.recommend import model as model_module
from storelens.cloud.personalization.recommend.service import FALLBACK
from storelens.cloud.services import Services
from storelens.cloud.settings import Settings

DAY = 86400.0


def _sales(db, now: float) -> None:  # noqa: ANN001
    for n in range(5):
        sales.record_sale(db, sales.SaleIn(store="paris", ts=now - DAY * (n + 1), items=[
            sales.SaleItem(sku="H1", qty=1), sales.SaleItem(sku="S2", qty=1)]))  # fmt: skip


def test_the_api_loads_the_stored_model_and_never_builds_the_learned_one(db, monkeypatch) -> None:
    chain = build_chain(db, with_tokens=False)
    ann = chain.member("ann")
    _sales(db, time.time())
    learned_builds: list[bool] = []
    real_build = model_module.build_model

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        settings = kwargs.get("settings")
        learned_builds.append(bool(settings is None or settings.learn_ranker))
        return real_build(*args, **kwargs)

    monkeypatch.setattr("storelens.cloud.personalization.recommend.service.build_model", counting)
    settings = Settings.from_env({}, db_url="unused")
    api = Services.for_api(settings, db)
    try:
        served = api.recommendations(start=False)
        assert served.role == "load"
        # No model stored yet: the fallback, without the learned ranker, and it says so.
        fallback = served.model
        assert served.source == FALLBACK and fallback.personal is None
        assert learned_builds == [False]
        assert served.for_member(ann, "paris", limit=2)

        builder_services = Services.for_builder(settings, db)
        builder = builder_services.recommendations(start=False)
        assert builder.role == "build"
        built = builder.rebuild()
        assert learned_builds == [False, True]
        first = artifacts.latest_id(db)
        assert first is not None and builder.source == f"stored #{first}"

        # The API swaps in the stored model on its next poll, and builds nothing itself.
        served.refresh()
        assert served.source == f"stored #{first}"
        assert served.model.built_at == built.built_at
        assert learned_builds == [False, True]
        # A later build replaces it; polling again without a new build changes nothing.
        builder.rebuild(now=time.time() + 1)
        served.refresh()
        assert served.source == f"stored #{artifacts.latest_id(db)}" != f"stored #{first}"
        loaded = served.model
        served.refresh()
        assert served.model is loaded and len(learned_builds) == 3
        builder_services.close()
    finally:
        api.close()


def test_only_the_newest_models_are_kept(db) -> None:
    build_chain(db, with_tokens=False)
    model = RecommendationService(db, role="build").rebuild()  # built, not stored
    assert artifacts.latest_id(db) is None
    ids = [artifacts.save(db, model) for _ in range(5)]
    kept = [r["id"] for r in db.query("SELECT id FROM recommend_models ORDER BY id")]
    assert kept == ids[-artifacts.KEEP :]
    assert artifacts.load_latest(db).id == ids[-1]


def test_the_background_loader_picks_up_a_new_build(db) -> None:
    build_chain(db, with_tokens=False)
    served = RecommendationService(db, role="load", load_interval_s=0.05)
    served.start()
    try:
        assert served.wait_ready(30) and served.source == FALLBACK
        RecommendationService(db, role="build", store=True).rebuild()
        deadline = time.monotonic() + 30
        while served.source == FALLBACK:
            assert time.monotonic() < deadline, "the stored model was never loaded"
            time.sleep(0.05)
        assert served.source == f"stored #{artifacts.latest_id(db)}"
    finally:
        served.stop()


def test_cli_recommend_build_stores_a_model(db, db_url, monkeypatch) -> None:
    from storelens.cloud.cli import app

    build_chain(db, with_tokens=False)
    _sales(db, time.time())
    monkeypatch.setenv("STORELENS_DB_URL", db_url)
    assert artifacts.latest_id(db) is None
    result = CliRunner().invoke(app, ["recommend", "build"])
    assert result.exit_code == 0, result.output
    assert "stored #" in result.output
    stored = artifacts.load_latest(db)
    assert stored is not None and "H1" in stored.model.sku_index
