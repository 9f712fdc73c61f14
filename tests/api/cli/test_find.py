"""`strata find` through the real command line: a table or JSON, similarity, paging,
and a malformed query refused with its caret and exit code, never importing a model
library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from strata.core.service import Strata
from tests.api.cli.test_cli import Cli, cli  # noqa: F401 - the fixture
from tests.core.find.store import build


def test_find_prints_a_table_json_and_refuses_bad_queries(
    strata: Strata, cli: Cli, tmp_path: Path  # noqa: F811
) -> None:
    built = build(strata, tmp_path)
    table = cli("find", 'prompt:"golden hour" seed:42').stdout
    assert table.split("\t")[0] == built.g42[7:19] and "text-to-image" in table

    found = json.loads(cli("find", "fox OR wolf", "--json", "--limit", "2").stdout)
    assert found["total"] == 4 and len(found["rows"]) == 2 and found["similar_to"] is None
    assert set(found["rows"][0]) == {"digest", "media_type", "layer", "operation",
                                     "created_at", "actor", "position", "distance"}

    near = json.loads(cli("find", "--similar", built.g42[7:19], "--distance", "8",
                          "--json").stdout)
    assert [r["digest"] for r in near["rows"]] == [built.g42, built.edit]
    assert near["rows"][0]["distance"] == 0 and near["similar_to"] == built.g42
    # A query that starts with "-" follows "--", as any such argument does.
    assert cli("find", "--similar", built.g42[7:19], "--", "-layer:generation").stdout.split(
        "\t")[0] == built.edit[7:19]

    refused = cli("find", "steps>=many fox", ok=False)
    assert refused.returncode != 0 and refused.stdout == ""
    assert "column 1" in refused.stderr and "steps>=many fox" in refused.stderr
    assert "^^^^^^^^^^^" in refused.stderr
    assert cli("find", "--similar", built.g42[7:19], "--distance", "40",
               ok=False).returncode != 0
    assert "no matches" in cli("find", "unicorn").stderr


def test_find_imports_no_model_library(
    strata: Strata, cli: Cli, tmp_path: Path  # noqa: F811
) -> None:
    built = build(strata, tmp_path)
    probe = ("import sys\nfrom strata.api.cli.main import main\ntry:\n    main()\n"
             "finally:\n    print('HEAVY', [m for m in ('torch', 'diffusers', 'transformers',"
             " 'numpy', 'av') if m in sys.modules], file=sys.stderr)\n")
    result = subprocess.run(
        [sys.executable, "-c", probe, "find", "fox root-prompt:fox", "--similar",
         built.g42[7:19]], env=cli.env, cwd=cli.cwd, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr
