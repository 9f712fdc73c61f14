"""Start-up benchmark: the wall time of each read command, from the shell's point of view
(a fresh interpreter per run, as `strata …` is), beside two baselines measured in the same
loop: `python -c pass` (the interpreter alone) and `python -c "import sqlalchemy"` (the
floor of any command that opens the database).

Target (issue "Faster where users wait", item 4): every read command ≤ 0.3 s (median).
The store is small (a few imported images, a derivation, a branch): start-up is what is
measured, not the query. Runs take turns command by command, round by round, so that a
busy machine slows every contender alike. Beside the wall time each run's CPU time (user +
system, of the child process) is measured: on a shared machine it moves far less than the
wall time, so the ratio to bare SQLAlchemy is taken in CPU time and says how much a command
costs above the database layer wherever it runs. The load average at the end is printed.
Every contender runs once before the timed rounds, with a bytecode cache (see make_store).

Run it from the checkout: `python bench/startup.py [--rounds N]`; `-X importtime`
(`python -X importtime -m strata.api.cli.main log`) says where a slow start goes — with
one blind spot: it does not time modules imported by `importlib.import_module` (the command
module, the layers), whose own imports then show at the top level, as if nothing imported
them.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ledger import Row, environment, log, print_report, verdict

TARGET_S = 0.3


def make_store(home: Path) -> dict[str, str]:
    """A small store made through the CLI: three images, one derived from another, a
    branch; the environment that opens it."""
    from PIL import Image

    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_HOME"] = str(home / ".strata")
    # Bytecode is cached (in the temporary folder, not the checkout) even where the
    # environment says not to write it: an installed Strata has its modules compiled, and
    # compiling ~70 of them from source on every run would be measured instead of the start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    files = []
    for i in range(3):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (60 * i, 90, 200 - 50 * i)).save(buffer, format="PNG")
        files.append(home / f"picture-{i}.png")
        files[-1].write_bytes(buffer.getvalue())

    def strata(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "strata.api.cli.main", *args], env=env,
                              check=True, capture_output=True, text=True, cwd=home).stdout

    strata("init", "--no-tiny")
    first = strata("add", str(files[0]), str(files[1])).split()[0]
    child = strata("add", str(files[2]), "--from", first).split()[0]
    strata("branch", "create", "look", "--from", child)
    env["BENCH_ASSET"] = child
    return env


def _children_cpu() -> float:
    """CPU seconds (user + system) used so far by the child processes waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _figures(wall: float, cpu: float) -> str:
    return f"{wall * 1000:.0f} ms ({cpu * 1000:.0f} ms CPU)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="runs of each (median)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="strata-startup-") as folder:
        root = Path(folder)
        log("making a small store")
        env = make_store(root)
        asset = env["BENCH_ASSET"]
        cli = [sys.executable, "-m", "strata.api.cli.main"]
        contenders = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import sqlalchemy'": [sys.executable, "-c", "import sqlalchemy"],
            "strata --help": [*cli, "--help"],
            "strata log": [*cli, "log"],
            "strata show ASSET": [*cli, "show", asset],
            "strata status": [*cli, "status"],
            "strata lineage ASSET": [*cli, "lineage", asset],
        }
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        log("a first run of each, not counted (it writes the bytecode cache)")
        for command in contenders.values():
            subprocess.run(command, env=env, cwd=root, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for round_ in range(args.rounds):
            log(f"round {round_ + 1} of {args.rounds}")
            for name, command in contenders.items():
                began, used = time.perf_counter(), _children_cpu()
                subprocess.run(command, env=env, cwd=root, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                walls[name].append(time.perf_counter() - began)
                cpus[name].append(_children_cpu() - used)
        wall = {name: statistics.median(values) for name, values in walls.items()}
        cpu = {name: statistics.median(values) for name, values in cpus.items()}
        bare, floor = "python -c pass", "python -c 'import sqlalchemy'"
        rows = [Row("`python -c pass` (baseline)", _figures(wall[bare], cpu[bare]), "-", "-",
                    "-", "info")]
        for name in list(contenders)[2:]:
            rows.append(Row(
                f"{name.split()[1]} start-up (`{name}`, median of {args.rounds})",
                _figures(wall[name], cpu[name]),
                f"import sqlalchemy {_figures(wall[floor], cpu[floor])} · python -c pass "
                f"{_figures(wall[bare], cpu[bare])}", f"{cpu[name] / cpu[floor]:.2f}x CPU",
                f"≤ {TARGET_S * 1000:.0f} ms", verdict(wall[name] <= TARGET_S)))
        load = " / ".join(f"{figure:.2f}" for figure in os.getloadavg())
        print_report("start-up", False, time.perf_counter() - started,
                     f"{environment(root)} · load average {load} (1, 5, 15 min) at the end",
                     rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
