"""`strata provenance` and `strata audit` through the real command line, on a layer the
code base does not know (the invert plug-in of the test suite): provenance is generic
over layers, and reading it never imports a model library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
from prov.model import ProvDocument

from tests.api.cli.test_cli import Cli, write_png
from tests.core.layers.test_plugin_layer import plugin_cli, request_invert  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "docs" / "provenance.schema.json").read_text())
HEAVY = ("torch", "diffusers", "transformers")
PROBE = ("import sys\nfrom strata.api.cli.main import main\ntry:\n    main()\nfinally:\n"
         f"    print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n")


def test_provenance_and_audit_of_a_plugin_layer(plugin_cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    cli = plugin_cli
    cli("add", str(write_png(tmp_path, "src.png", 1)))
    (source,) = cli.digests()
    job = request_invert(cli, source, 1.0)
    cli("worker", "--until-idle", "--poll", "0.1")
    (inverted,) = [d for d in cli.digests() if d != source]
    cli("pick", inverted[7:19], "--note", "crisp")
    cli("add", str(write_png(tmp_path, "touched.png", 2)), "--from", inverted[7:19],
        "--operation", "touch-up")
    (final,) = [d for d in cli.digests() if d not in (source, inverted)]

    document = json.loads(cli("provenance", final[7:19], "--format", "json").stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    imported, invert, touch = document["steps"]
    assert (imported["kind"], touch["kind"], touch["operation"]) == (
        "import", "external", "touch-up")
    assert (invert["layer"], invert["operation"], invert["job_id"]) == ("invert", "invert", job)
    assert invert["parameters"] == {"source": source, "strength": 1.0}
    assert invert["facts"]["pillow"] and invert["executor"] == {"name": "invert",
                                                                "version": "1"}
    assert invert["outputs"][0]["inputs"] == [{"digest": source, "role": "source"}]
    assert [(d["type"], d["note"]) for d in document["decisions"]] == [
        ("selection.picked", "crisp")]

    tree = cli("provenance", final[7:19]).stdout
    assert f"source: {inverted[7:19]}  invert invert" in tree and "strength=1.0" in tree
    assert "# Provenance of" in cli("provenance", final, "--format", "markdown").stdout
    for fmt, prov_format in (("prov-n", "provn"), ("prov-json", "json"), ("prov-xml", "xml")):
        text = cli("provenance", final[7:19], "--format", fmt).stdout
        assert ProvDocument.deserialize(content=text, format=prov_format).get_records()

    audited = json.loads(cli("audit", final[7:19], "--json").stdout)
    assert audited["asset"] == final
    assert [e["type"] for e in audited["events"]] == [
        "asset.imported", "invert.requested", "job.started", "invert.completed",
        "selection.picked", "asset.derived"]
    rows = cli("audit", final[7:19]).stdout.splitlines()
    assert len(rows) == 6 and rows[2].split("\t")[2] == "job.started"

    refused = cli("provenance", final[7:19], "--format", "yaml", ok=False)
    assert refused.returncode == 2 and "unknown provenance format 'yaml'" in refused.stderr
    missing = cli("audit", "abcdef12", ok=False)
    assert missing.returncode == 4

    for args in (["provenance", final[7:19], "--format", "prov-n"], ["audit", final[7:19]]):
        probe = subprocess.run([sys.executable, "-c", PROBE, *args], env=cli.env, cwd=cli.cwd,
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr
        assert "HEAVY []" in probe.stderr, (args, probe.stderr)
