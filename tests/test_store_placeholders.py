"""Portable SQL's `?` placeholders on both backends: a `?` or `%` that is text (inside a string
literal, a quoted identifier or a comment) stays text. PostgreSQL's shim once rewrote every
`?` with a regex, so `'why?'` became `'why%s'` and the statement failed or took a parameter."""

from __future__ import annotations

import pytest

from storelens.cloud.db.postgres import _pg


def test_question_marks_in_literals_stay_text(db) -> None:
    row = db.query_one(
        "SELECT ? AS a, 'why?' AS b, 'it''s ? 100%' AS c, ? AS \"what?\" -- trailing ?\n",
        (1, "two"),
    )
    assert row == {"a": 1, "b": "why?", "c": "it's ? 100%", "what?": "two"}


def test_like_patterns_with_question_marks_and_percent(db) -> None:
    db.execute("CREATE TABLE notes (body TEXT)")
    db.executemany("INSERT INTO notes (body) VALUES (?)", [("size?",), ("size",), ("50% off?",)])
    found = db.query(
        "SELECT body FROM notes /* only questions? */ WHERE body LIKE '%?' AND body <> ?"
        " ORDER BY body",
        ("nothing",),
    )
    assert [r["body"] for r in found] == ["50% off?", "size?"]


@pytest.mark.parametrize(
    ("portable", "psycopg"),
    [
        ("SELECT * FROM t WHERE a = ? AND b IN (?, ?)",
         "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)"),
        ("SELECT '?' || ?", "SELECT '?' || %s"),
        ("SELECT $$a?$$, ?", "SELECT $$a?$$, %s"),
        ("SELECT 'x%' LIKE ?", "SELECT 'x%%' LIKE %s"),
        ("SELECT 1 -- why?\nWHERE ? = 1", "SELECT 1 -- why?\nWHERE %s = 1"),
    ],
)  # fmt: skip
def test_rewrite_for_psycopg(portable: str, psycopg: str) -> None:
    assert _pg(portable) == psycopg
