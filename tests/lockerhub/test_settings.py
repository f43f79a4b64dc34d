"""Settings come from the environment and refuse bad values with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 30 + "Z9-x" * 8
PRODUCTION = {
    "DATABASE_URL": "postgres://lockerhub@db.internal:5432/lockerhub",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "lockers.example.com",
}


def inherited_env() -> dict[str, str]:
    """This process's environment without any LockerHub setting (CI sets some for its own run)."""
    ours = {
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "SECURE_SSL_REDIRECT",
    }
    return {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("LOCKERHUB_")}


def run_django(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = inherited_env()
    clean.update(
        {"DJANGO_SETTINGS_MODULE": "lockerhub.settings", "LOCKERHUB_DATA_DIR": str(tmp_path)}, **env
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


SETUP = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"


def test_check_deploy_is_clean_with_production_variables(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **inherited_env(),
            **PRODUCTION,
            "LOCKERHUB_DATA_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_variables_select_postgresql(tmp_path: Path) -> None:
    result = run_django(SETUP, PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "postgresql" in result.stdout


def test_embedded_default_is_sqlite_with_a_private_secret_key(tmp_path: Path) -> None:
    result = run_django(SETUP, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout
    key_file = tmp_path / "secret_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert len(key_file.read_text()) >= 50


def test_secret_key_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text(GOOD_KEY + "\n")
    env = {**PRODUCTION, "SECRET_KEY_FILE": str(secret)}
    del env["SECRET_KEY"]
    result = run_django(
        "import django; django.setup(); from django.conf import settings; print(len(settings.SECRET_KEY))",
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(GOOD_KEY))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        (
            {"DATABASE_URL": "mysql://x/y", "SECRET_KEY": GOOD_KEY},
            "DATABASE_URL must be a URL starting with",
        ),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must be a URL starting with"),
        ({"DATABASE_URL": "postgres://db/x"}, "SECRET_KEY (or SECRET_KEY_FILE) is required"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 50 characters"),
        (
            {"SECRET_KEY_FILE": "/nonexistent/key"},
            "SECRET_KEY_FILE='/nonexistent/key' cannot be read",
        ),
        (
            {"LOCKERHUB_RESERVATION_TIMEOUT": "soon"},
            "LOCKERHUB_RESERVATION_TIMEOUT='soon' is not a whole number",
        ),
        (
            {"LOCKERHUB_RESERVATION_TIMEOUT": "0"},
            "LOCKERHUB_RESERVATION_TIMEOUT=0 must be at least 1",
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run_django(SETUP, env, tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


OPTIONS = "import django; django.setup(); from django.conf import settings; o = settings.DATABASES['default']['OPTIONS']; print(o.get('server_side_binding'), o.get('prepare_threshold'))"


@pytest.mark.parametrize(
    ("threshold", "expected"), [(None, "True 5"), ("2", "True 2"), ("0", "True None")]
)
def test_postgresql_binds_on_the_server_and_prepares_repeated_statements(
    tmp_path: Path, threshold: str | None, expected: str
) -> None:
    env = dict(PRODUCTION)
    if threshold is not None:
        env["LOCKERHUB_DB_PREPARE_THRESHOLD"] = threshold
    result = run_django(OPTIONS, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_bad_prepare_threshold_is_refused(tmp_path: Path) -> None:
    result = run_django(OPTIONS, {**PRODUCTION, "LOCKERHUB_DB_PREPARE_THRESHOLD": "-1"}, tmp_path)
    assert result.returncode != 0
    assert "LOCKERHUB_DB_PREPARE_THRESHOLD=-1 must be at least 0" in result.stderr
