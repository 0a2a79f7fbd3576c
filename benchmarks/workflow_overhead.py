"""Workflow overhead: where the CPU of a Snakemake run goes, per rule, and how much of it is the fixed
cost of starting a job rather than its work.

    .venv/bin/python -m benchmarks.workflow_overhead [--config .test/config.yaml] [--cores 2] [--quick]

Runs the workflow on ``--config`` (default: the tiny ``.test/config.yaml``, every rule type) in a
fresh temporary directory, exactly as ``tests/test_workflow.py`` does (``snakemake --directory TMP
--configfile CONFIG --cores N`` from the repository root, so the default workflow profile applies),
and reports per rule:

* ``jobs``, ``wall s`` and ``CPU s``: from the rule's ``benchmark:`` files (Snakemake's ``s`` and
  ``cpu_time`` columns, summed over the rule's jobs). Snakemake samples ``cpu_time`` with psutil, so
  it can miss the CPU of a short job; ``proc CPU s`` is the exact figure, see below.
* ``proc CPU s``: the CPU time (user + system, ``getrusage``) of the job's Python process(es),
  recorded by the process itself at exit.
* ``startup CPU s`` / ``startup wall s``: the part of that spent on *starting*: interpreter
  initialisation (the process's CPU time when ``site`` runs) plus every ``import`` executed by the
  process, wherever it happens (the handlers of ``lmmvae`` import lazily, so imports are timed where
  they run, not only at the top). Both are measured inside the job: a ``sitecustomize`` module on
  ``PYTHONPATH`` (written by this script into the temporary directory; ``LMMVAE_OVERHEAD_LOG`` names
  its log) wraps ``builtins.__import__`` and ``importlib.import_module`` and adds up the wall and
  CPU time of each outermost import. Reading inputs (HDF5, checkpoints) is counted as work, not
  startup: it is needed work, and where two jobs read the same inputs the saving shows in the
  rule's CPU, not here. Wall time before ``site`` runs comes from ``/proc/self/stat`` (10 ms ticks).
* ``startup %``: startup CPU as a share of the rule's process CPU.

and for the whole run: its wall time, its CPU (``getrusage(RUSAGE_CHILDREN)`` around the Snakemake
subprocess: Snakemake, its shells and every job), the jobs' process CPU, Snakemake's own CPU (the
main Snakemake process's ``getrusage(RUSAGE_SELF)`` at exit, same log) and the rest (run CPU −
jobs − Snakemake: the shells around the jobs, ``printf`` rules, and the interpreter's shutdown
after ``atexit``, which for a process that imported torch was 0.5–1 s of CPU until ``python -m
lmmvae`` left through ``os._exit``; the log is written just before), and the *per-job
overhead*: jobs' startup + Snakemake + the rest, as a share of the run's CPU and per job in
seconds. On the tiny config almost everything is overhead (its trainings take 2 epochs of toy
data); the per-job seconds are what carries over to a real run (the target: overhead ≤ 10 %
of the default run's CPU).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import harness

NAME = "workflow_overhead"
REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = REPO / ".test" / "config.yaml"

#: imported first by every Python process started with the temporary directory on PYTHONPATH
SITECUSTOMIZE = r'''
import os as _os
_LOG = _os.environ.get("LMMVAE_OVERHEAD_LOG")
if _LOG:
    import _thread, atexit, builtins, importlib, json, resource, sys, time

    _cpu0, _boot0 = time.process_time(), time.clock_gettime(time.CLOCK_BOOTTIME)
    try:  # field 22 of /proc/self/stat: the process's start, in clock ticks since boot
        _ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        _start = _ticks / _os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        _start = _boot0
    _main, _state = _thread.get_ident(), {"depth": 0, "wall": 0.0, "cpu": 0.0}

    def _timed(fn):
        def timed(*args, **kwargs):
            if _state["depth"] or _thread.get_ident() != _main:
                return fn(*args, **kwargs)
            _state["depth"] = 1
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                _state["wall"] += time.perf_counter() - w
                _state["cpu"] += time.process_time() - c
                _state["depth"] = 0
        return timed

    builtins.__import__ = _timed(builtins.__import__)
    importlib.import_module = _timed(importlib.import_module)

    def _stdout():
        try:
            return _os.readlink("/proc/self/fd/1")
        except OSError:
            return ""

    @atexit.register
    def _record():
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        record = {
            "argv": [sys.executable] + sys.argv, "cwd": _os.getcwd(), "stdout": _stdout(),
            "wall": time.clock_gettime(time.CLOCK_BOOTTIME) - _start,
            "cpu": me.ru_utime + me.ru_stime, "children_cpu": kids.ru_utime + kids.ru_stime,
            "init_wall": _boot0 - _start, "init_cpu": _cpu0,
            "import_wall": _state["wall"], "import_cpu": _state["cpu"],
        }
        with open(_LOG, "a") as f:
            f.write(json.dumps(record) + "\n")

    _os_exit = _os._exit

    def _exit(code):  # python -m lmmvae leaves through os._exit, which skips atexit
        _record()
        _os_exit(code)

    _os._exit = _exit
'''


def script_rules() -> dict[str, str]:
    """``{script file name: rule}`` for the workflow's ``script:`` rules."""
    text = "".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    found = {}
    for block in re.split(r"^rule ", text, flags=re.M)[1:]:
        name = block.split(":", 1)[0]
        script = re.search(r"script:\s*\n\s*\"([^\"]+)\"", block)
        if script:
            found[Path(script.group(1)).name] = name
    return found


def rule_of_record(record: dict, workdir: Path, scripts: dict[str, str]) -> str:
    """The rule a process belongs to: its log (stdout) ``results/logs/<rule>/...``, or its script."""
    argv = record["argv"]
    if any(Path(a).name == "snakemake" for a in argv[:2]):
        return "snakemake"
    logs = workdir / "results" / "logs"
    try:
        relative = Path(record["stdout"]).relative_to(logs)
        return relative.parts[0].removesuffix(".log")
    except ValueError:
        pass
    for arg in argv[1:3]:  # snakemake runs a script as .snakemake/scripts/tmpXXXX.<name>.py
        for script, rule in scripts.items():
            if arg.endswith(script):
                return rule
    return "other"


def rule_of_benchmark(path: Path, root: Path) -> str:
    """``results/benchmarks/<rule>/...tsv`` or ``results/benchmarks/<rule>.tsv``."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def read_benchmarks(root: Path) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"jobs": 0, "wall": 0.0, "cpu": 0.0})
    for tsv in sorted(root.rglob("*.tsv")):
        header, *rows = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]
        for row in rows:
            values = dict(zip(header, row))
            entry = totals[rule_of_benchmark(tsv, root)]
            entry["jobs"] += 1
            entry["wall"] += float(values["s"])
            cpu = values.get("cpu_time", "NA")
            entry["cpu"] += float(cpu) if cpu not in ("", "NA", "-") else 0.0
    return totals


def run_workflow(config: Path, cores: int, workdir: Path, extra: list[str]) -> dict:
    """Run Snakemake once on ``config`` in ``workdir``; the raw measurements."""
    site = workdir / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = workdir / "overhead.jsonl"
    env = dict(os.environ, LMMVAE_OVERHEAD_LOG=str(log),
               PYTHONPATH=os.pathsep.join(p for p in (str(site), str(REPO), os.environ.get("PYTHONPATH")) if p))
    cmd = [SNAKEMAKE, "--directory", str(workdir), "--cores", str(cores), *extra, "--configfile", str(config)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"snakemake failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"wall": wall, "cpu": cpu, "records": records, "command": " ".join(cmd[1:]),
            "benchmarks": read_benchmarks(workdir / "results" / "benchmarks")}


def summarise(raw: dict, workdir: Path) -> tuple[list[dict], dict]:
    scripts = script_rules()
    procs: dict[str, dict[str, float]] = collections.defaultdict(
        lambda: {"procs": 0, "cpu": 0.0, "startup_cpu": 0.0, "startup_wall": 0.0})
    snakemake_cpu = 0.0
    for record in raw["records"]:
        rule = rule_of_record(record, workdir, scripts)
        if rule == "snakemake":
            # the main process (the one whose children are the jobs); its rusage excludes them
            snakemake_cpu += record["cpu"]
            continue
        entry = procs[rule]
        entry["procs"] += 1
        entry["cpu"] += record["cpu"] + record["children_cpu"]
        entry["startup_cpu"] += record["init_cpu"] + record["import_cpu"]
        entry["startup_wall"] += record["init_wall"] + record["import_wall"]
    rows = []
    for rule in sorted(set(raw["benchmarks"]) | set(procs)):
        bench = raw["benchmarks"].get(rule, {"jobs": 0, "wall": float("nan"), "cpu": float("nan")})
        proc = procs.get(rule, {"procs": 0, "cpu": 0.0, "startup_cpu": 0.0, "startup_wall": 0.0})
        rows.append({
            "rule": rule, "jobs": bench["jobs"], "wall_s": bench["wall"], "cpu_s": bench["cpu"],
            "proc_cpu_s": proc["cpu"], "startup_cpu_s": proc["startup_cpu"],
            "startup_wall_s": proc["startup_wall"],
            "startup_pct": 100 * proc["startup_cpu"] / proc["cpu"] if proc["cpu"] else float("nan"),
            "startup_per_job_s": proc["startup_cpu"] / proc["procs"] if proc["procs"] else float("nan"),
        })
    jobs = sum(r["jobs"] for r in rows)
    jobs_cpu = sum(r["proc_cpu_s"] for r in rows)
    startup = sum(r["startup_cpu_s"] for r in rows)
    rest = raw["cpu"] - jobs_cpu - snakemake_cpu
    overhead = startup + snakemake_cpu + rest
    totals = {
        "jobs": jobs, "run_wall_s": raw["wall"], "run_cpu_s": raw["cpu"], "jobs_cpu_s": jobs_cpu,
        "startup_cpu_s": startup, "snakemake_cpu_s": snakemake_cpu,
        "rest_cpu_s": rest,
        "overhead_pct": 100 * overhead / raw["cpu"], "overhead_per_job_s": overhead / max(jobs, 1),
        "snakemake_pct": 100 * snakemake_cpu / raw["cpu"], "startup_pct": 100 * startup / raw["cpu"],
    }
    rows.append({"rule": "**total**", "jobs": jobs, "wall_s": sum(r["wall_s"] for r in rows if r["jobs"]),
                 "cpu_s": sum(r["cpu_s"] for r in rows if r["jobs"]), "proc_cpu_s": jobs_cpu,
                 "startup_cpu_s": startup, "startup_wall_s": sum(r["startup_wall_s"] for r in rows),
                 "startup_pct": 100 * startup / jobs_cpu if jobs_cpu else float("nan"),
                 "startup_per_job_s": startup / max(jobs, 1)})
    return rows, totals


COLUMNS = [
    harness.Column("rule", "rule"),
    harness.Column("jobs", "jobs"),
    harness.Column("wall_s", "wall s", "{:.1f}"),
    harness.Column("cpu_s", "CPU s", "{:.1f}"),
    harness.Column("proc_cpu_s", "proc CPU s", "{:.1f}"),
    harness.Column("startup_cpu_s", "startup CPU s", "{:.1f}"),
    harness.Column("startup_wall_s", "startup wall s", "{:.1f}"),
    harness.Column("startup_pct", "startup %", "{:.0f}"),
    harness.Column("startup_per_job_s", "startup s / job", "{:.2f}"),
]


def totals_lines(totals: dict) -> list[str]:
    t = totals
    return [
        f"run: {t['jobs']} jobs, {t['run_wall_s']:.1f} s wall, {t['run_cpu_s']:.1f} s CPU "
        f"(jobs' processes {t['jobs_cpu_s']:.1f} s, Snakemake {t['snakemake_cpu_s']:.1f} s, "
        f"shells and the rest {t['rest_cpu_s']:.1f} s)",
        f"per-job overhead (jobs' startup + Snakemake + the rest): {t['startup_cpu_s']:.1f} + "
        f"{t['snakemake_cpu_s']:.1f} + {t['rest_cpu_s']:.1f} s = **{t['overhead_pct']:.0f} %** of the run's "
        f"CPU (startup {t['startup_pct']:.0f} %, Snakemake {t['snakemake_pct']:.0f} %); "
        f"**{t['overhead_per_job_s']:.2f} s CPU per job** (target: ≤ 10 % of a real run's CPU)",
    ]


def quick_config(path: Path) -> Path:
    """The tiny config with one experiment only (the PhysioNet one): a smoke run of a few jobs."""
    config = yaml.safe_load(TINY.read_text())
    config["experiments"] = {"physionet": config["experiments"]["physionet"]}
    config["datasets"] = {"physionet": config["datasets"]["physionet"]}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv=None) -> harness.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--config", default=str(TINY), help="workflow config (default: .test/config.yaml)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", default=None, help="run in this (new or empty) directory and keep it")
    parser.add_argument("--snakemake-args", default="", help="extra Snakemake arguments (one string)")
    args = parser.parse_args(argv)
    command = ("python -m benchmarks.workflow_overhead " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    with tempfile.TemporaryDirectory(prefix="workflow-overhead-") as tmp:
        workdir = Path(args.keep).resolve() if args.keep else Path(tmp) / "run"
        workdir.mkdir(parents=True, exist_ok=True)
        config = quick_config(Path(tmp) / "quick.yaml") if args.quick else Path(args.config).resolve()
        raw = run_workflow(config, args.cores, workdir, args.snakemake_args.split())
        rows, totals = summarise(raw, workdir)
    machine = f"{os.cpu_count()} CPU cores ({harness._cpu_model()}), Python {sys.version.split()[0]}"
    shown = raw["command"].replace(str(workdir), "TMP").replace(str(REPO), ".")
    notes = totals_lines(totals) + [f"Snakemake command: `snakemake {shown}`"]
    result = harness.Result(NAME, rows + [dict(totals, rule="run")], harness.markdown_table(rows, COLUMNS),
                            command, machine, notes)
    print(result.markdown())
    out = harness.csv_path(NAME, harness.choose_device("cpu"), args.out)
    print(f"CSV: {harness.write_csv(rows, out)}")
    print(f"totals CSV: {harness.write_csv([totals], out.with_name(NAME + '_totals.csv'))}")
    return result


if __name__ == "__main__":
    main()
