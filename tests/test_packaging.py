"""Installing Strata: a plain `pip install .` ships every module and the migrations, the
installed `strata` command works with no checkout beside it, and schema upgrades are
explained to the user."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest
from sqlalchemy import text

from strata.core.config import Settings
from strata.core.errors import StoreFromNewerVersion, StoreNotInitialised
from strata.core.storage import migrate
from strata.core.storage.db import make_engine
from strata.core.store import Store

ROOT = Path(__file__).resolve().parents[1]
# The checkout folders that install as strata.<folder> (the mapping in setup.py).
SHIPPED_FOLDERS = ("core", "api", "watchers", "migrations")
# What ships besides Python modules: alembic's template for new revisions.
DATA_FILES = ("migrations/script.py.mako", "api/http/web/index.html", "api/http/web/style.css",
              "api/http/web/js/app.js")


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


def _user_environment(**variables: str) -> dict[str, str]:
    """This process's environment as a user's shell would have it: nothing that points
    Python or Strata at the checkout, plus `variables`."""
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONPATH" and not key.startswith("STRATA_")}
    env.update(variables)
    return env


def test_the_wheel_ships_every_module_of_the_checkout_and_nothing_else(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    # Derived from the checkout, so a new folder that package discovery misses fails here.
    expected = {f"strata/{path.relative_to(ROOT).as_posix()}"
                for folder in SHIPPED_FOLDERS for path in (ROOT / folder).rglob("*.py")}
    expected |= {f"strata/{name}" for name in DATA_FILES}
    assert sorted(expected - names) == []

    (dist_info,) = {name.split("/")[0] for name in names if ".dist-info/" in name}
    allowed = (*(f"strata/{folder}/" for folder in SHIPPED_FOLDERS), f"{dist_info}/")
    # tests/, bench/ and the checkout's top-level layout stay out of an install.
    assert sorted(name for name in names if not name.startswith(allowed)) == []

    (script,) = PathDistribution(zipfile.Path(wheel, f"{dist_info}/")).entry_points.select(
        group="console_scripts", name="strata")
    assert f"{script.module.replace('.', '/')}.py" in names


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
    env = _user_environment(PYTHONPATH=str(target), STRATA_HOME=str(tmp_path / "store"))
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    current, head = result.stdout.split()
    assert current == head == migrate.head_revision()


@pytest.mark.slow
def test_the_installed_command_runs_the_demo_in_a_fresh_environment(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)],
                   check=True, capture_output=True, timeout=300)
    bin_dir = venv / "bin"
    # Installed before the dependencies are made visible, so that pip sees no other strata.
    subprocess.run([bin_dir / "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    site = subprocess.run(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    # Torch, diffusers, … come from this environment instead of a download. Plain path lines
    # add its folders to sys.path without running the .pth files inside them, so the
    # checkout's editable finder stays inactive in the fresh environment.
    dependencies = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    Path(site, "dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))

    user = tmp_path / "user"
    user.mkdir()
    env = _user_environment(STRATA_HOME=str(user / "store"), VIRTUAL_ENV=str(venv),
                            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def run(*command: str | Path) -> str:
        result = subprocess.run(command, env=env, cwd=user, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout

    probe = ("import sys, strata.core\n"
             "assert not [m for m in sys.modules if m.startswith('__editable__')], 'editable'\n"
             "print(strata.core.__file__)\n")
    imported = run(bin_dir / "python", "-c", probe).strip()
    assert Path(imported).is_relative_to(site), imported

    assert "demo" in run(bin_dir / "strata", "--help")
    assert "verify: OK" in run(bin_dir / "strata", "demo")
    assert "final.marked" in run(bin_dir / "strata", "log")


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


def test_a_schema_from_a_newer_strata_is_refused_and_never_touched(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "store")
    Store.open(settings, create=True).close()
    engine = make_engine(settings.effective_database_url)
    with engine.begin() as conn:  # as a newer Strata's migration would leave it
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    for create in (False, True):  # neither reading nor `strata init` touches it
        with pytest.raises(StoreFromNewerVersion, match=r"schema 0099_from_the_future.*newer"):
            Store.open(settings, create=create)
    assert migrate.current_revision(engine) == "0099_from_the_future"


def test_an_empty_database_says_to_run_init(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "store")
    settings.resolved_home.mkdir(parents=True)
    with pytest.raises(StoreNotInitialised, match=r"no Strata store .* run `strata init` first"):
        Store.open(settings)
