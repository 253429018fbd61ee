"""Finance in Fava (SPEC v2 §3): every root loads in Fava with no errors, shows revenue
positive and all its queries in the sidebar; every dashboard panel's query runs through the
dashboards extension on Fava's own application.  Needs the `fava` extra (CI installs it)."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from builders import init_books, money_event, sub, use

from ledger_engine.books import layout
from ledger_engine.post import post

fava_application = pytest.importorskip("fava.application")
pytest.importorskip("fava_dashboards")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_books" / "books"


def fava_client(root: Path):
    app = fava_application.create_app([str(root)], load=True)
    app.testing = True
    loader = app.config["LEDGERS"]
    return app.test_client(), loader.first_slug(), loader.ledgers[0]


def dashboard_queries() -> list[str]:
    source = layout.DASHBOARDS_TEMPLATE.read_text(encoding="utf-8")
    return [" ".join(q.split()) for q in re.findall(r"`(SELECT[^`]*)`", source)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("fava") / "books"
    shutil.copytree(SAMPLE, copy)
    return copy


def test_the_gl_loads_in_fava_with_revenue_positive_and_every_query_in_the_sidebar(sample):
    client, slug, ledger = fava_client(sample / layout.LEDGER_NAME)
    assert ledger.errors == []
    assert ledger.fava_options.invert_income_liabilities_equity is True
    assert ledger.fava_options.sidebar_show_queries == len(layout.QUERIES)
    assert [q.name for q in ledger.all_entries_by_type.Query] == list(layout.QUERIES)
    assert client.get(f"/{slug}/income_statement/").status_code == 200
    assert client.get(f"/{slug}/api/errors").get_json()["data"] == []


def test_every_query_of_the_gl_and_of_a_subledger_returns_data_in_fava(sample):
    roots = [
        (sample / layout.LEDGER_NAME, layout.QUERIES),
        (sample / "customers/C-echo-2Dmedia/customer.beancount", layout.CUSTOMER_QUERIES),
    ]
    for root, queries in roots:
        client, slug, ledger = fava_client(root)
        assert ledger.errors == []
        assert ledger.fava_options.sidebar_show_queries == len(queries)
        for name in queries:
            answer = client.get(f"/{slug}/api/query?query_string=" + quote(f".run {name}"))
            rows = answer.get_json()["data"]["rows"]
            assert answer.status_code == 200 and rows, (root.name, name)
            assert not any(isinstance(cell, str) and "sqlite3" in cell for r in rows for cell in r)


def test_every_dashboard_panel_query_runs_through_the_extension(sample):
    client, slug, _ = fava_client(sample / layout.LEDGER_NAME)
    base = f"/{slug}/extension/FavaDashboards"
    assert client.get(f"{base}/").status_code == 200
    config = client.get(f"{base}/v2_config").get_json()
    assert config["success"] and "defineConfig" in config["data"]["configJs"]
    assert client.get(f"{base}/v2_ledger").get_json()["success"]
    queries = dashboard_queries()
    assert len(queries) == 6
    for bql in queries:
        answer = client.get(f"{base}/query?bql=" + quote(bql)).get_json()
        assert answer["success"] and answer["data"]["result"], bql


def test_fresh_books_load_in_fava_without_errors(tmp_path):
    books = init_books(tmp_path / "books")
    events = tmp_path / "e.jsonl"
    documents = (
        sub("acme", "2026-11-01T08:00:00Z", "boost"),
        use("acme", "2026-11-02T08:00:00Z", "c1"),
        money_event("credit_grant", "acme", "2026-11-03T08:00:00Z", "2.00", id="g"),
    )
    events.write_text("".join(json.dumps(document) + "\n" for document in documents))
    post(books, [str(events)], datetime.date(2026, 11, 30))
    for root in (books / layout.LEDGER_NAME, books / "customers/C-acme/customer.beancount"):
        _, _, ledger = fava_client(root)
        assert ledger.errors == [], root
