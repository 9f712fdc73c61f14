"""The layer commands through the real command line, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.core.config import Settings
from tests.api.cli.test_cli import Cli


@pytest.fixture
def cli(settings: Settings, tmp_path: Path, tiny_model_folder: Path) -> Cli:
    runner = Cli(settings, tmp_path)
    runner("init", "--no-tiny")
    runner("model", "add", "tiny", str(tiny_model_folder))
    return runner


def events(cli: Cli, *types: str) -> list[dict]:
    args = ["log", "--json", "--limit", "10000"]
    for type_ in types:
        args += ["--type", type_]
    return [json.loads(line) for line in cli(*args).stdout.splitlines()]


def test_demo_is_the_main_job(settings: Settings, tmp_path: Path) -> None:
    cli = Cli(settings, tmp_path)
    result = cli("demo")
    out = result.stdout
    assert "generated 6 candidates" in out and "auto-selected 3 of 6" in out
    assert "rolled demo back one head" in out and "verify: OK" in out
    final = out.split("final ", 1)[1].split()[0]
    assert final.startswith("sha256:")
    finals = events(cli, "final.marked")
    assert [e["data"]["digest"] for e in finals] == [final]
    shown = json.loads(cli("show", final, "--json").stdout)
    assert shown["asset"]["media_type"] == "video/mp4"
    assert (shown["asset"]["video_codec"], shown["asset"]["audio_codec"]) == ("h264", "aac")
    # All seven layers are in the final's ancestry, back to the prompt.
    made = {e["type"].split(".")[0] for e in events(cli) if e["type"].endswith(".completed")}
    assert {"generation", "selection", "editing", "compositing", "enhancement", "motion",
            "sound"} <= made
    lineage = json.loads(cli("lineage", final, "--json").stdout)["edges"]
    layers_up = {edge["layer"] for edge in lineage}
    assert {"generation", "editing", "compositing", "enhancement", "motion", "sound"} <= layers_up
    assert "parent · generation text-to-image" in out  # the tree printed by the demo
    moves = events(cli, "branch.created", "branch.advanced", "branch.rolled_back")
    assert [e["type"] for e in moves] == [
        "branch.created", *["branch.advanced"] * 3, "branch.rolled_back",
        *["branch.advanced"] * 5]  # inpaint, composite, enhance, motion, sound
    assert moves[-1]["data"]["head"] == final
    iterations = [e for e in events(cli, "generation.requested") if e["data"].get("iterates")]
    assert len(iterations) == 2
    assert "verify OK" in cli("verify").stdout


def test_generate_select_iterate_diff_branch_review(cli: Cli) -> None:
    assert "tiny" in cli("model", "list").stdout
    cli("branch", "create", "look")
    cli("checkout", "look")
    out = cli("generate", "a red fox", "--n", "3", "--seed", "7", "--steps", "2",
              "--wait").stdout
    assert out.count("→ ") == 3
    (completed,) = events(cli, "generation.completed")
    job = completed["data"]["job_id"]
    outputs = [o["asset"]["digest"] for o in completed["data"]["outputs"]]
    assert "look" in cli("branch").stdout and outputs[0][7:19] in cli("branch").stdout

    selected = cli("select", "auto", job, "--top", "2").stdout
    ranked = [line.split("\t") for line in selected.splitlines() if "\t" in line]
    assert [row[0] for row in ranked] == ["1", "2", "-"]  # porcelain: rank first, no header
    assert {row[1] for row in ranked} == {o[7:19] for o in outputs}
    assert selected.count("sha256") == 0

    iterated = cli("iterate", outputs[1][7:19], "--set", "steps=3", "--set",
                   "prompt+=, at dusk", "--wait").stdout
    assert "steps 2 → 3" in iterated and "'a red fox' → 'a red fox, at dusk'" in iterated
    new = events(cli, "generation.completed")[-1]["data"]["outputs"][0]["asset"]["digest"]
    diff = cli("diff", outputs[1][7:19], new[7:19]).stdout
    assert "steps" in diff and "prompt" in diff and "seed" not in diff

    shown = cli("show", new[7:19]).stdout
    assert "prompt: a red fox, at dusk" in shown and "seed: 8" in shown
    assert "model: sha256:" in shown and "head of: look" in shown

    log = cli("branch", "log", "look").stdout
    assert log.count("advanced") == 2
    moved = cli("branch", "advance", "look", outputs[2][7:19]).stdout
    assert f"→ {outputs[2][7:19]}" in moved
    cli("rollback", "--to", "~1", "--reason", "the third candidate is worse")
    assert new[7:19] in cli("branch").stdout
    cli("rollback", "--to", outputs[0][7:19], "--reason", "dusk is too dark")
    assert outputs[0][7:19] in cli("branch").stdout
    cli("review", outputs[0][7:19], "approve", "--note", "keep")
    cli("final", outputs[0][7:19])
    cli("pick", outputs[0][7:19])
    cli("rate", outputs[0][7:19], "5")
    shown = cli("show", outputs[0][7:19]).stdout
    assert "approve" in shown and "final" in shown and "'rating': 5" in shown
    assert "completed" in cli("jobs").stdout


def test_bad_layer_arguments_are_refused_before_anything_is_appended(cli: Cli) -> None:
    before = len(events(cli))
    for args, message in (
        (["generate", "fox", "--size", "big"], "WIDTHxHEIGHT"),
        (["generate", "fox", "--size", "63x64"], "multiple of 8"),
        (["generate", "fox", "--steps", "0"], "steps"),
        (["generate", "fox", "--scheduler", "warp"], "unknown scheduler"),
        (["generate", "fox", "--model", "sdxl"], "no model named 'sdxl'"),
        (["rate", "ffff", "9"], ""),
        (["review", "ffff", "meh"], ""),
        (["rollback", "--to", "~1"], "no branch given"),
        (["cancel", "0000dead"], "no job matches"),
        (["iterate", "ffff", "--seed", "maybe"], "keep or new"),
    ):
        result = cli(*args, ok=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
    assert len(events(cli)) == before


def test_a_requested_job_is_served_by_a_worker_and_can_be_cancelled(cli: Cli) -> None:
    cli("generate", "first", "--n", "1", "--steps", "2")
    cli("generate", "second", "--n", "1", "--steps", "2")
    second = events(cli, "generation.requested")[-1]["data"]["job_id"]
    assert "cancelled job" in cli("cancel", second[:10], "--reason", "typo").stdout
    result = cli("worker", "--until-idle", "--poll", "0.1")
    assert "stopped after 1 job(s)" in result.stderr
    statuses = cli("jobs").stdout
    assert "completed" in statuses and "cancelled" in statuses
    again = cli("cancel", second, ok=False)
    assert again.returncode == 8 and "already cancelled" in again.stderr


def test_generate_warns_when_the_model_will_not_read_the_whole_prompt(cli: Cli) -> None:
    long_prompt = "a red fox in the snow " * 5  # 80 letters: 82 tokens, 77 are read
    warned = cli("generate", long_prompt)
    assert "warning: the prompt is 82 tokens long but the model reads at most 77" in " ".join(
        warned.stderr.split())
    quiet = cli("generate", "a red fox")
    assert "warning" not in quiet.stderr
    (first, _) = events(cli, "generation.requested")
    assert first["data"]["prompt"] == long_prompt  # the request keeps the whole text
