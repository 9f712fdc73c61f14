"""Installing Strata: a plain `pip install .` ships the migrations, and schema upgrades
are explained to the user."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from strata.core.config import Settings
from strata.core.errors import StoreNotInitialised
from strata.core.storage import migrate
from strata.core.storage.db import make_engine
from strata.core.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (found,) = out.glob("strata-*.whl")
    return found


def test_the_wheel_ships_every_package_and_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("strata/core/ledger/log.py", "strata/core/layers/generation.py",
                     "strata/api/cli/main.py", "strata/api/cli/commands/assets.py", "strata/watchers/__init__.py",
                     "strata/migrations/env.py", "strata/migrations/script.py.mako",
                     "strata/migrations/versions/0001_the_event_log_projections_and_job_leases.py",
                     "strata/migrations/versions/0002_registered_models.py"):
        assert expected in names, expected
    assert not any(name.startswith(("core/", "api/", "tests/")) for name in names)


def test_a_plain_install_migrates_a_new_store_without_a_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    probe = (
        "import strata.core.storage.migrate as m, strata.core.store as s, strata.core.config as c\n"
        f"assert m.__file__.startswith({str(target)!r}), m.__file__\n"
        "store = s.Store.open(c.Settings(), create=True)\n"
        "print(m.current_revision(store.engine), m.head_revision())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update(PYTHONPATH=str(target), STRATA_HOME=str(tmp_path / "store"))
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    current, head = result.stdout.split()
    assert current == head == migrate.head_revision()


def test_an_older_schema_says_to_run_init_and_init_upgrades_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "store")
    settings.resolved_home.mkdir(parents=True)
    engine = make_engine(settings.effective_database_url)
    migrate.upgrade(engine, "0001")
    with pytest.raises(StoreNotInitialised, match=r"is at schema 0001.*run `strata init`"):
        Store.open(settings)
    Store.open(settings, create=True)
    assert migrate.current_revision(engine) == migrate.head_revision()
    Store.open(settings)  # now usable


def test_an_empty_database_says_to_run_init(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "store")
    settings.resolved_home.mkdir(parents=True)
    with pytest.raises(StoreNotInitialised, match=r"no Strata store .* run `strata init` first"):
        Store.open(settings)
