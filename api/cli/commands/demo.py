"""`strata demo`: the main job, end to end, on the embedded default and the tiny model."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, TextColumn

from strata.api.cli.app import app, console
from strata.api.cli.commands.assets import lineage_tree
from strata.core.config import Settings
from strata.core.projections.lineage import walk
from strata.core.service import Strata
from strata.core.store import Store


@app.command()
def demo() -> None:
    """Initialise a store if needed and run all seven layers on the tiny model: generate →
    select → iterate on a branch → roll back → inpaint → composite → enhance → motion and
    sound → review → final; print the final MP4's lineage."""
    from strata.core.demo import run_demo
    from strata.core.provenance.verify import verify_store

    strata = Strata(Store.open(Settings(), create=True))
    console.print(f"store: {strata.store.settings.resolved_home}")
    with Progress(TextColumn("  {task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), console=console,
                  transient=True) as progress:
        task = progress.add_task("denoising", total=None)

        def on_progress(job_id: str, done: int, total: int) -> None:
            progress.update(task, description=f"job {job_id[:8]}", completed=done, total=total)

        result = run_demo(strata, lambda line: console.print(f"• {line}"), on_progress)
    console.print(f"\n[bold]final[/] {result.final}  (branch {result.branch})")
    with strata.view() as conn:
        edges = walk(conn, result.final, "up", depth=50)
    console.print(lineage_tree(result.final, edges, "up"))
    report = verify_store(strata)
    console.print(f"verify: {'OK' if report.ok else 'FAILED'} — {report.events} events, "
                  f"{report.blobs_checked} blobs re-hashed")
    console.print("explore: strata log · strata show <asset> · strata branch log "
                  f"{result.branch} · strata diff <a> <b>")
