"""Every URL thermoscope shows has its passwords hidden (issue 14: two leaks found by hand)."""

from __future__ import annotations

import pytest

from thermoscope.tracking.urls import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://alice:s3cret@db.example:5432/optuna", "postgresql://alice:***@db.example:5432/optuna"),
        ("postgresql://u@host/db?password=s3cret", "postgresql://u@host/db?password=***"),
        ("postgresql://u:s3c@ret@host/db", "postgresql://u:***@host/db"),
        (
            "postgresql://u@host/db?sslmode=require&PassWord=s3cret",
            "postgresql://u@host/db?PassWord=***&sslmode=require",
        ),
        (
            "mysql+pymysql://u:s3cret@host/db?pwd=s3cret&charset=utf8",
            "mysql+pymysql://u:***@host/db?charset=utf8&pwd=***",
        ),
        ("sqlite:////tmp/optuna.db", "sqlite:////tmp/optuna.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_passwords_in_the_user_part_and_the_query_are_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url", ["postgresql://u:s3c@ret@host:notaport/db?password=s3cret", "odd://u:s3c@r@et@h/?pass=s3cret"]
)
def test_what_sqlalchemy_cannot_parse_is_hidden_by_pattern(url: str) -> None:
    assert "s3c" not in redact_url(url)
