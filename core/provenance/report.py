"""Provenance for people: a text tree for the terminal and a Markdown report for a client.

Both read a `Provenance` (core.provenance.ancestry) and nothing else, so they describe
every layer the same way: the layer's parameters and facts as it recorded them. `render`
is the one entry point of `strata provenance`, for every format.
"""

from __future__ import annotations

import json
from typing import Any

from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import short
from strata.core.provenance.ancestry import (
    DecisionRecord,
    Provenance,
    Step,
    collection_paused,
    provenance,
)
from strata.core.service import Strata

FORMATS = ("tree", "json", "markdown", "prov-json", "prov-n", "prov-xml")


def render(strata: Strata, asset_ref: str, fmt: str = "tree", as_of: int | None = None) -> str:
    """The provenance of an asset in one of FORMATS, as text."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown provenance format {fmt!r}; formats: {', '.join(FORMATS)}")
    # Writing the text out allocates as much as reading the ancestry (see collection_paused).
    with collection_paused():
        return _render(strata, asset_ref, fmt, as_of)


def _render(strata: Strata, asset_ref: str, fmt: str, as_of: int | None) -> str:
    found = provenance(strata, asset_ref, as_of)
    if fmt == "json":
        return as_json(found)
    if fmt == "tree":
        return tree(found)
    if fmt == "markdown":
        return markdown(found)
    from strata.core.provenance.prov import serialize

    return serialize(found, fmt)


def as_json(found: Provenance) -> str:
    """The documented JSON (docs/provenance.schema.json), keys sorted, without spaces.
    orjson (`Provenance.dumps`): a thousand ancestors make a document of megabytes, which
    the standard encoder takes five times as long to write."""
    return found.dumps().decode()


def _value(value: Any) -> str:
    """A parameter's value in one line: a model by its name and digest, else compact JSON."""
    if isinstance(value, dict) and "digest" in value and "name" in value:
        return f"{value['name']} ({value['digest']})"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _made_by(step: Step) -> str:
    if step.kind == "import":
        source = step.facts.get("source")
        return f"imported{' from ' + source if source else ''} (made outside Strata)"
    if step.kind == "external":
        return f"{step.operation} (made outside Strata)"
    extras = [f"model {step.model['name']} {short(step.model.get('digest'))}"
              if step.model else "", f"on {step.device}" if step.device else ""]
    return " ".join(filter(None, [f"{step.layer} {step.operation}", *extras]))


def _decision_line(decision: DecisionRecord) -> str:
    # A decision's summary already carries its note (or a rollback's reason).
    return (f"{decision.type}: {decision.summary} "
            f"({decision.actor or 'unknown'}, {decision.time[:19]})")


def tree(found: Provenance) -> str:
    """The ancestry as an indented tree, from the asset down to its roots; an asset
    reached twice (a diamond in the DAG) is expanded once."""
    steps = {s.id: s for s in found.steps}
    made_by = {a.digest: steps[a.step] for a in found.assets}
    inputs: dict[str, list[tuple[str, str]]] = {}
    for edge in found.edges:
        inputs.setdefault(edge.output, []).append((edge.role, edge.input))
    decisions: dict[str, list[DecisionRecord]] = {}
    for decision in found.decisions:
        for digest in decision.assets:
            decisions.setdefault(digest, []).append(decision)
    lines: list[str] = []
    expanded: set[str] = set()

    def grow(digest: str, role: str | None, lead: str, rest: str) -> None:
        step = made_by[digest]
        output = next(o for o in step.outputs if o.digest == digest)
        seed = f" seed {output.seed}" if output.seed is not None else ""
        head = f"{role}: " if role else ""
        if digest in expanded:
            lines.append(f"{lead}{head}{short(digest)} (shown above)")
            return
        expanded.add(digest)
        lines.append(f"{lead}{head}{short(digest)}  {_made_by(step)}{seed}")
        details = [f"{k}={_value(v)}" for k, v in {**step.parameters,
                                                   **output.parameters}.items()
                   if v is not None and k != "model"]
        when = f"{step.actor or 'unknown'}, {step.time[:19]}"
        if step.executor:
            when += f", executor {step.executor['name']}/{step.executor['version']}"
        children = sorted(inputs.get(digest, []))
        bar = "│  " if children else "   "
        lines.append(f"{rest}{bar}  by {when}")
        if details:
            lines.append(f"{rest}{bar}  " + ", ".join(details))
        lines.extend(f"{rest}{bar}  • {_decision_line(d)}" for d in decisions.get(digest, []))
        for number, (child_role, child) in enumerate(children, start=1):
            last = number == len(children)
            grow(child, child_role, rest + ("└─ " if last else "├─ "),
                 rest + ("   " if last else "│  "))

    grow(found.asset, None, "", "")
    when = f"as of position {found.as_of}" if found.as_of is not None else "log position"
    lines.append(f"({len(found.steps)} step(s), {len(found.decisions)} decision(s); "
                 f"{when} {found.log_position})")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return _value(value).replace("|", "\\|").replace("\n", " ")


def markdown(found: Provenance) -> str:
    """A report a person can hand to a client: what the asset is, every step that made
    it in the order it happened, and every decision taken on the way."""
    out = [f"# Provenance of `{found.asset}`", ""]
    where = (f"as the log stood at position {found.as_of}" if found.as_of is not None
             else f"as of log position {found.log_position}")
    outside = sum(1 for s in found.steps if s.made_outside_strata)
    out += [f"This report covers {len(found.assets)} asset(s) made in {len(found.steps)} "
            f"step(s) ({outside} made outside Strata) and {len(found.decisions)} decision(s), "
            f"{where}. It began from: " + ", ".join(f"`{short(r)}`" for r in found.roots)
            + ".", ""]
    out += ["## Steps", ""]
    for number, step in enumerate(found.steps, start=1):
        out += _markdown_step(number, step)
    out += ["## Decisions", ""]
    if not found.decisions:
        out += ["No selection, review or branch decision involved these assets.", ""]
    for decision in found.decisions:
        out.append(f"- **{decision.type}** on "
                   + ", ".join(f"`{short(d)}`" for d in decision.assets)
                   + f" by {decision.actor or 'unknown'} at {decision.time}: "
                   + decision.summary)
        candidates = decision.details.get("candidates")
        if isinstance(candidates, list) and candidates:
            out += ["", "  | candidate | score | rank | kept | in this ancestry |",
                    "  |---|---|---|---|---|"]
            out += [f"  | `{short(c.get('digest'))}` | {c.get('score')} | "
                    f"{c.get('rank') or '-'} | {'yes' if c.get('kept') else 'no'} | "
                    f"{'yes' if c.get('in_ancestry') else 'no'} |" for c in candidates]
            out.append("")
    out += ["", "## Assets", "", "| asset | type | size | made by |", "|---|---|---|---|"]
    for asset in found.assets:
        size = f"{asset.width}x{asset.height}" if asset.width else f"{asset.size:,} bytes"
        out.append(f"| `{asset.digest}` | {asset.media_type} | {size} | {asset.layer} |")
    return "\n".join(out) + "\n"


def _markdown_step(number: int, step: Step) -> list[str]:
    job = f" (job `{step.job_id[:8]}`)" if step.job_id else ""
    out = [f"### {number}. {step.layer}: {step.operation}{job}", ""]
    if step.made_outside_strata:
        out.append("- **Made outside Strata**: recorded as given; no recipe to replay.")
    for output in step.outputs:
        seed = f", seed {output.seed}" if output.seed is not None else ""
        inputs = ", ".join(f"{i.role} `{short(i.digest)}`" for i in output.inputs)
        out.append(f"- Made `{output.digest}`{seed}" + (f" from {inputs}" if inputs else ""))
    if len(step.batch) > 1:
        out.append(f"- One of a batch of {len(step.batch)} made together")
    if step.requested_at:
        out.append(f"- Requested by {step.requested_by or 'unknown'} at {step.requested_at}")
    out.append(f"- Recorded by {step.actor or 'unknown'}@{step.host or '?'} at {step.time}")
    if step.executor:
        out.append(f"- Executor {step.executor['name']} version {step.executor['version']}"
                   + (f", device {step.device}" if step.device else ""))
    if step.model:
        out.append(f"- Model {step.model.get('name')}, weights `{step.model.get('digest')}`")
    if step.versions:
        out.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(
            step.versions.items())))
    if step.iterates:
        changed = ", ".join(f"{k}: {_value(c.get('from'))} → {_value(c.get('to'))}"
                            for k, c in (step.changes or {}).items())
        out.append(f"- Iterates job `{step.iterates[:8]}`" + (f" ({changed})" if changed
                                                               else ""))
    failed = [a for a in step.attempts if a.outcome != "completed"]
    for attempt in failed:
        out.append(f"- Attempt {attempt.attempt} {attempt.outcome}"
                   + (f": {attempt.error_class}: {attempt.message}" if attempt.error_class
                      else ""))
    parameters = {k: v for k, v in step.parameters.items() if v is not None}
    facts = {k: v for k, v in step.facts.items()
             if v is not None and k not in ("model", "versions", "device")}
    for title, values in (("Parameters", parameters), ("Recorded facts", facts)):
        if values:
            out += ["", f"| {title.lower()} | value |", "|---|---|"]
            out += [f"| {k} | {_cell(v)} |" for k, v in values.items()]
    out.append("")
    return out
