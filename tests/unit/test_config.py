"""Configuration precedence as a table: explicit > LINEAGE_* environment > default."""

from __future__ import annotations

import pytest

from lineage.config import SETTINGS, Settings
from lineage.errors import ConfigurationError

CASES = [
    # explicit, environment, expected
    ({}, {}, "sqlite:///lineage.db"),
    ({}, {"LINEAGE_DATABASE_URL": "sqlite:///env.db"}, "sqlite:///env.db"),
    ({"database_url": "sqlite:///arg.db"}, {"LINEAGE_DATABASE_URL": "sqlite:///env.db"}, "sqlite:///arg.db"),
    ({"database_url": None}, {"LINEAGE_DATABASE_URL": "sqlite:///env.db"}, "sqlite:///env.db"),
    ({}, {"LINEAGE_DATABASE_URL": "   "}, "sqlite:///lineage.db"),
]


@pytest.mark.parametrize(("explicit", "environ", "expected"), CASES)
def test_database_url_precedence(explicit: dict, environ: dict, expected: str) -> None:
    assert Settings.load(environ, **explicit).database_url == expected


@pytest.mark.parametrize(
    ("name", "env", "text", "value"),
    [
        ("tenant_id", "LINEAGE_TENANT", "acme", "acme"),
        ("actor", "LINEAGE_ACTOR", "alice", "alice"),
        ("source", "LINEAGE_SOURCE", "node-7/train.py", "node-7/train.py"),
        ("queue_size", "LINEAGE_QUEUE_SIZE", "5000", 5000),
        ("batch_size", "LINEAGE_BATCH_SIZE", "250", 250),
        ("batch_interval_s", "LINEAGE_BATCH_INTERVAL_S", "0.01", 0.01),
        ("retry_for_s", "LINEAGE_RETRY_FOR_S", "3", 3.0),
        ("lock_timeout_s", "LINEAGE_LOCK_TIMEOUT_S", "0.25", 0.25),
        ("heartbeat_interval_s", "LINEAGE_HEARTBEAT_INTERVAL_S", "0.5", 0.5),
        ("recovery_lease_s", "LINEAGE_RECOVERY_LEASE_S", "45", 45.0),
    ],
)
def test_every_setting_reads_its_environment_variable(name: str, env: str, text: str, value: object) -> None:
    assert getattr(Settings.load({env: text}), name) == value
    assert getattr(Settings.load({env: text}, **{name: value}), name) == value


def test_each_setting_is_declared_once_with_a_lineage_variable() -> None:
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert all(s.env.startswith("LINEAGE_") and s.meaning for s in SETTINGS)


@pytest.mark.parametrize("env", ["LINEAGE_QUEUE_SIZE", "LINEAGE_BATCH_SIZE"])
@pytest.mark.parametrize("text", ["0", "-3", "many"])
def test_invalid_values_say_what_to_set(env: str, text: str) -> None:
    with pytest.raises(ConfigurationError, match=env):
        Settings.load({env: text})


def test_unknown_explicit_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        Settings.load({}, colour="blue")


@pytest.mark.parametrize(("name", "value"), [
    ("queue_size", 0), ("queue_size", -5), ("queue_size", 2.5), ("queue_size", True),
    ("batch_size", 10**30 * -1), ("retry_for_s", 0), ("retry_for_s", float("nan")),
    ("lock_timeout_s", -1.0), ("heartbeat_interval_s", float("-inf")),
])
def test_explicit_numbers_are_held_to_the_variables_rule(name: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"{name}=.* is invalid"):
        Settings.load({}, **{name: value})


def test_a_tracker_refuses_an_explicit_out_of_range_setting_before_opening_anything(
        tmp_path: object) -> None:
    import os

    import lineage

    path = os.path.join(str(tmp_path), "never.db")
    with pytest.raises(ConfigurationError, match="queue_size"):
        lineage.Tracker(f"sqlite:///{path}", queue_size=-1)
    assert not os.path.exists(path)


def test_remote_settings_come_from_the_same_loader() -> None:
    """The remote tracker's url, token and spool folder: explicit > LINEAGE_* > default."""
    from lineage.config.remote import remote_setting

    environ = {"LINEAGE_URL": " https://x.example ", "LINEAGE_TOKEN": "lnt.env", "LINEAGE_SPOOL_DIR": " "}
    assert remote_setting("url", None, environ) == "https://x.example"
    assert remote_setting("token", "lnt.arg", environ) == "lnt.arg"
    assert remote_setting("token", None, environ) == "lnt.env"
    assert remote_setting("spool_dir", None, environ).endswith("/.cache/lineage/spool")  # blank: unset
    assert remote_setting("url", None, {}) is None and remote_setting("token", None, {}) == ""
