"""`strata export` and `strata verify-file` on the real command line, and the same
commands where c2pa-python cannot be imported."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from strata.api.cli.errors import EXIT_CODES
from strata.core.errors import IntegrityError, InvalidInput, NotFound
from tests.api.cli import test_cli
from tests.api.cli.test_cli import Cli, write_png

cli = test_cli.cli  # the fixture: an initialised store and its command line


def test_export_signed_and_verify_file(cli: Cli, tmp_path: Path) -> None:
    cli("keys", "init", "--origin", "strata.example/studio")
    cli("add", str(write_png(tmp_path, "a.png", 1)))
    (digest,) = cli.digests()
    target = tmp_path / "out.png"
    said = cli("export", digest[7:19], str(target), "--c2pa").stdout
    assert "signed with Content Credentials" in said and str(target) in said
    with Image.open(target) as image:
        assert json.loads(image.info["strata"])["asset"] == digest
    assert "asset.exported" in cli("log").stdout

    shown = cli("verify-file", str(target)).stdout
    assert "Content Credentials: Trusted" in shown
    assert "strata.example/studio" in shown and "c2pa.opened" in shown
    as_json = json.loads(cli("verify-file", str(target), "--json").stdout)
    assert as_json["state"] == "Trusted" and as_json["failures"] == []

    unsigned = cli("verify-file", str(write_png(tmp_path, "b.png", 2)), ok=False)
    assert unsigned.returncode == EXIT_CODES[NotFound]
    assert "no Content Credentials" in unsigned.stderr
    data = bytearray(target.read_bytes())
    data[data.index(b"IDAT") + 12] ^= 0xFF
    target.write_bytes(bytes(data))
    tampered = cli("verify-file", str(target), ok=False)
    assert tampered.returncode == EXIT_CODES[IntegrityError]
    assert "Invalid" in tampered.stdout


def test_bad_exports_exit_2_and_record_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("add", str(write_png(tmp_path, "a.png", 1)))
    (digest,) = cli.digests()
    log = cli("log", "--json").stdout
    for args, words in [(["--format", "tiff"], "unknown export format"),
                        ([], "does not exist")]:
        target = tmp_path / ("x.png" if args else "nowhere/x.png")
        refused = cli("export", digest[7:19], str(target), *args, ok=False)
        assert refused.returncode == EXIT_CODES[InvalidInput], refused.stderr
        assert words in refused.stderr
        assert not target.exists()
    assert cli("log", "--json").stdout == log


def test_without_c2pa_python_the_commands_say_why(cli: Cli, tmp_path: Path) -> None:
    # A `c2pa` package that fails to import, first on the path: as on a platform whose
    # native library is missing.
    broken = tmp_path / "broken"
    (broken / "c2pa").mkdir(parents=True)
    (broken / "c2pa" / "__init__.py").write_text(
        "raise ImportError('libc2pa_c.so: cannot open shared object file')\n")
    cli.env["PYTHONPATH"] = str(broken)
    cli("keys", "init")
    cli("add", str(write_png(tmp_path, "a.png", 1)))
    (digest,) = cli.digests()
    refused = cli("export", digest[7:19], str(tmp_path / "s.png"), "--c2pa", ok=False)
    assert refused.returncode == EXIT_CODES[InvalidInput]
    assert "c2pa-python" in refused.stderr and "libc2pa_c.so" in refused.stderr
    assert "c2pa-python" in cli("verify-file", str(tmp_path / "a.png"), ok=False).stderr
    cli("export", digest[7:19], str(tmp_path / "plain.png"))
    assert (tmp_path / "plain.png").is_file()
