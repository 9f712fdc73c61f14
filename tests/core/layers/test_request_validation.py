"""Generation requests are checked where they are made (issue 14.5): an unknown device or
dtype and a cfg that is not a number are refused by `build_request`, and a prompt longer
than the text encoder reads is announced then and recorded as the model read it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from strata.core.errors import InvalidInput
from strata.core.layers import build_executors
from strata.core.layers.generation import (
    GenerationCompleted,
    GenerationRequested,
    build_request,
)
from strata.core.ledger.events import NewEvent, registry
from strata.core.models.diffusion import prompt_window_warnings
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.conftest import settings_env

# The tiny model's tokenizer has one token per character (spaces only separate words), and
# reads 77 tokens: a start marker, 75 characters and an end marker. This prompt has 16
# characters a round, 80 in all: 82 tokens; the model reads it up to "a red fox in th".
LONG_PROMPT = "A red fox in the snow " * 5
READ = "a red fox in the snow " * 4 + "a red fox in th"


@pytest.mark.parametrize(("option", "message"), [
    ({"device": "gpu"}, "unknown device 'gpu'"),
    ({"device": "cuda:x"}, "unknown device 'cuda:x'"),
    ({"dtype": "int8"}, "unknown dtype 'int8'"),
    ({"cfg": math.nan}, "cfg: Input should be a finite number"),
    ({"cfg": math.inf}, "cfg: Input should be a finite number"),
])
def test_a_bad_setting_is_refused_at_request_time(
    tiny: Strata, option: dict, message: str,
) -> None:
    before = tiny.ledger.head_position()
    with pytest.raises(InvalidInput, match=message) as raised:
        build_request(tiny, "a red fox", model="tiny", **option)
    assert "less than or equal" not in str(raised.value)
    assert tiny.ledger.head_position() == before


def test_a_request_recorded_before_the_checks_still_decodes_and_projects(tiny: Strata) -> None:
    # Earlier versions accepted any device name; their events must not stop the projections.
    request = build_request(tiny, "a red fox", model="tiny")
    data = {**request.model_dump(mode="json"), "device": "gpu", "dtype": "int8"}
    tiny.ledger.append(jobs.stream(request.job_id),
                       [NewEvent(type="generation.requested", data=data, validated=True)])
    (recorded,) = tiny.ledger.read_stream(jobs.stream(request.job_id))
    assert isinstance(recorded.payload, GenerationRequested)
    assert recorded.payload.device == "gpu"
    assert jobs.get(tiny, request.job_id)["status"] == "requested"
    assert tiny.store.projections.state().problem is None


def test_known_device_and_dtype_names_pass_whatever_this_machine_has(tiny: Strata) -> None:
    # Whether the device exists is the worker's question: requests may be made elsewhere.
    request = build_request(tiny, "a red fox", model="tiny", device="cuda:3", dtype="float16")
    assert (request.device, request.dtype) == ("cuda:3", "float16")


def test_a_prompt_longer_than_the_window_is_announced_at_request_time(tiny: Strata) -> None:
    request = build_request(tiny, LONG_PROMPT, model="tiny", negative_prompt="blur")
    (warning,) = request.prompt_window_warnings()
    assert warning.startswith("the prompt is 82 tokens long but the model reads at most 77")
    assert build_request(tiny, "a red fox", model="tiny").prompt_window_warnings() == []

    both = build_request(tiny, LONG_PROMPT, model="tiny", negative_prompt=LONG_PROMPT)
    assert [w.split(" is ")[0] for w in both.prompt_window_warnings()] == [
        "the prompt", "the negative prompt"]
    assert request.prompt == LONG_PROMPT  # the recipe keeps the full text


def test_the_clip_tokenizer_is_rebuilt_from_vocab_and_merges(
    tiny_model_folder: Path, tmp_path: Path,
) -> None:
    """Stable Diffusion folders ship vocab.json and merges.txt without a tokenizer.json;
    the count must then still match transformers' CLIPTokenizer, merges included."""
    from transformers import CLIPTokenizer

    model = tmp_path / "model"
    folder = Path(shutil.copytree(tiny_model_folder / "tokenizer", model / "tokenizer"))
    (folder / "tokenizer.json").unlink()
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = ["f o", "fo x</w>", "r e", "re d</w>"]
    for token in ("fo", "fox</w>", "re", "red</w>"):
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    clip = CLIPTokenizer.from_pretrained(folder, local_files_only=True)

    for text in ("A red fox, 1984!", "foxes ñ RED  red's", "x" * 80):
        expected = len(clip(text).input_ids)
        warnings = prompt_window_warnings(model, {"prompt": text})
        if expected > 77:
            assert warnings and f"is {expected} tokens long" in warnings[0]
        else:
            assert warnings == []
    # The merges count: two tokens, where character by character this would be 8 + 2.
    assert len(clip("red fox").input_ids) == 4
    assert prompt_window_warnings(model, {"prompt": "red fox " * 37}) == []
    assert prompt_window_warnings(model, {"prompt": "red fox " * 38})


def test_no_tokenizer_files_means_no_warning(tmp_path: Path) -> None:
    # A single-file checkpoint has no tokenizer folder: nothing to count with, nothing said.
    assert prompt_window_warnings(tmp_path / "model.safetensors", {"prompt": "x" * 500}) == []


def test_request_time_checks_import_neither_torch_nor_transformers(tiny: Strata) -> None:
    script = (
        "import sys\n"
        "from strata.core.layers.generation import build_request\n"
        "from strata.core.service import Strata\n"
        "from strata.core.store import Store\n"
        f"request = build_request(Strata(Store.open()), {LONG_PROMPT!r}, model='tiny')\n"
        "assert request.prompt_window_warnings()\n"
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True,
                   env=settings_env(tiny.store.settings), timeout=120)


@pytest.mark.parametrize("backend", ["sqlite"])  # the claim is about the executor
def test_the_worker_records_what_the_model_read(tiny: Strata) -> None:
    worker = Worker(tiny, build_executors(("generation",)))
    request = build_request(tiny, LONG_PROMPT, model="tiny", negative_prompt="Blur", steps=1)
    jobs.request(tiny, request)
    assert worker.wait_for(request.job_id)["status"] == "completed"
    completed = tiny.ledger.read_stream(jobs.stream(request.job_id))[-1]
    # 75 characters, lower-cased as CLIP's tokenizer does; the short negative prompt was
    # read whole, so nothing is recorded for it.
    assert completed.data["prompt_seen"] == READ
    assert completed.data["negative_prompt_seen"] is None

    # Completion events written before these fields existed still decode.
    old = {k: v for k, v in completed.data.items() if not k.endswith("_seen")}
    decoded = registry.decode("generation.completed", completed.schema, old)
    assert isinstance(decoded, GenerationCompleted) and decoded.prompt_seen is None
