"""A real SLURM run: the tiny ``.test`` config through ``--workflow-profile profiles/slurm``
on a live cluster. ``make test-slurm`` starts a throw-away single-node cluster
(``workflow/scripts/local_slurm.sh``) and runs this file inside it with ``LMMVAE_TEST_SLURM=1``.
Without that opt-in (so ``make test`` never submits jobs, not even on a real cluster's login node)
the live tests are skipped. The dry runs of the packing profiles (several trainings per GPU) run
everywhere.

``local_slurm.sh --preflight`` (what CI asks before ``make test-slurm``) is tested everywhere on a
fake machine: a PATH holding this machine's /usr/bin without the SLURM and munge commands, plus
stand-ins for ``id`` and ``apt-get``, so no test needs root or installs anything.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lmmvae.reporting.experiments import load_plan

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = REPO / ".test" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def cluster_reachable() -> bool:
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "UP" in ping.stdout


pytestmark = pytest.mark.slow
live = pytest.mark.skipif(os.environ.get("LMMVAE_TEST_SLURM") != "1",
                          reason="submits SLURM jobs: only with LMMVAE_TEST_SLURM=1 (`make test-slurm`)")


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> tuple[Path, str]:
    # opted in: a missing executor plugin fails here instead of skipping (a skip would pass CI)
    import snakemake_executor_plugin_slurm  # noqa: F401
    assert cluster_reachable(), "LMMVAE_TEST_SLURM=1 but no SLURM controller answers `scontrol ping`"
    workdir = tmp_path_factory.mktemp("slurm")
    # Accounting is off on the test cluster, so job states come from squeue (MinJobAge=3600 keeps
    # finished jobs visible); the first status check after 2 s instead of 40 s. Everything else,
    # resources included, is the profile's.
    cmd = [SNAKEMAKE, "--directory", str(workdir), "--workflow-profile", "profiles/slurm",
           "--configfile", str(TINY), "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "2"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    out = done.stdout + done.stderr
    (workdir / "run.log").write_text(out)
    assert done.returncode == 0, out[-5000:]
    return workdir, out


@live
def test_every_cluster_job_was_submitted_with_sbatch_and_completed(slurm_run):
    _, log = slurm_run
    assert "Using workflow specific profile profiles/slurm" in log
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    cluster_rules = re.findall(r"^rule (\w+):", log, flags=re.M)  # `localrule` blocks run here
    assert submitted and len(submitted) == len(set(submitted)) == len(cluster_rules)
    assert {"fit", "data"} <= set(cluster_rules)
    # the cluster's own record: each of those job ids ran on it and completed
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T"],
                           capture_output=True, text=True, check=True).stdout
    states = dict(line.split("|") for line in queue.split())
    assert {job: states.get(job) for job in submitted} == {job: "COMPLETED" for job in submitted}


@live
def test_results_of_the_slurm_run_are_complete(slurm_run):
    workdir, _ = slurm_run
    metrics = pd.read_csv(workdir / "results" / "metrics.csv")
    plan = load_plan(yaml.safe_load(TINY.read_text()), SCHEMA)
    assert set(zip(metrics["dataset"], metrics["model"], metrics["seed"])) == \
        {(r.dataset, r.model, r.seed) for r in plan.runs}
    assert metrics["value"].notna().all()
    for experiment in plan.experiments:
        assert "| Model |" in (workdir / "results" / "tables" / f"{experiment}.md").read_text()
    for run in map(plan.training, plan.runs):  # models with identical settings share a training
        assert (workdir / "results" / "train" / run.dataset / run.name / f"seed{run.seed}" / "model.pt").exists()


def dry_run(profile: str, tmp_path: Path) -> str:
    cmd = [SNAKEMAKE, "--dry-run", "--directory", str(tmp_path), "--workflow-profile", profile,
           "--configfile", str(REPO / "config" / "paper.yaml")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"Using workflow specific profile {profile}" in out
    return out


def test_slurm_packed_profile_puts_four_trainings_on_one_gpu_per_submission(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = dry_run("profiles/slurm-packed", tmp_path)
    stats = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]  # the dry run prints the table twice
    n_fit = sum(int(n) for n in re.findall(r"^fit(?:_predictions)?\s+(\d+)$", stats, flags=re.M))
    groups = out.split("Group job gpu_pack")[1:]
    assert len(groups) == -(-n_fit // 4)  # ceil: every training is in a group of at most 4
    sizes = [len(re.findall(r"rule fit(?:_predictions)?:", g)) for g in groups]
    assert sum(sizes) == n_fit and max(sizes) == 4
    fit = re.findall(r"rule fit(?:_predictions)?:\n(?:.*\n)*?\s+resources: (.*)", out)
    # the GPU asked for once per group (a string resource), never summed into --gpus=4
    assert len(fit) == n_fit and all("gpu=0" in r and "gres=gpu:1" in r for r in fit)


def test_gpu_profile_lets_eight_trainings_share_the_gpu(tmp_path):
    out = dry_run("profiles/gpu", tmp_path)
    config = yaml.safe_load((REPO / "workflow" / "profiles" / "gpu" / "config.yaml").read_text())
    assert config["resources"] == ["gpu=8"] and config["set-threads"] == {"fit": 1, "fit_predictions": 1}
    fit = re.findall(r"rule fit(?:_predictions)?:\n(?:.*\n)*?\s+resources: (.*)", out)
    # each neural training takes one of the 8 slots; the 4 classical rows (no GPU) take none
    assert fit and sum("gpu=1" in r for r in fit) == len(fit) - 4 and sum("gpu=0" in r for r in fit) == 4


# ---- local_slurm.sh --preflight on a fake machine ------------------------------------------------

LOCAL_SLURM = REPO / "workflow" / "scripts" / "local_slurm.sh"
BASH = shutil.which("bash") or "/bin/bash"
SLURM_COMMANDS = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel"]
STUBS = {"slurmctld": 'echo "slurm-wlm 99.1"', "munged": 'echo "munge-9.9 (fake)"'}
APT = {  # stand-ins for apt-get; "installs" writes the SLURM stubs next to itself
    "fails": 'echo "E: Unable to locate package slurm-wlm" >&2; exit 100',
    "hangs": "sleep 60",
    "installs": 'echo "$*" >> "$(dirname "$0")/apt.log"\n'
                'case "$*" in *install*) for c in ' + " ".join(SLURM_COMMANDS) + '; do\n'
                '  printf \'#!/bin/sh\\necho "%s 99.1"\\n\' "$c" > "$(dirname "$0")/$c"; '
                'chmod 755 "$(dirname "$0")/$c"; done;; esac',
}


def write_exe(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def fake_machine(tmp_path: Path, *, uid: int = 0, slurm: bool = True, apt: str | None = None) -> Path:
    """A bin directory: every command of /usr/bin and /bin but the SLURM/munge ones, apt-get and id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    drop = set(SLURM_COMMANDS) | {"mungekey", "apt-get", "id"}
    for d in ("/usr/bin", "/bin"):
        for exe in Path(d).iterdir() if Path(d).is_dir() else ():
            if exe.name not in drop and not (bin_dir / exe.name).exists():
                (bin_dir / exe.name).symlink_to(exe)
    write_exe(bin_dir / "id", f"echo {uid}")
    for cmd in SLURM_COMMANDS if slurm else ():
        write_exe(bin_dir / cmd, STUBS.get(cmd, "exit 0"))
    if apt is not None:
        write_exe(bin_dir / "apt-get", APT[apt])
    return bin_dir


def free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            if port <= 65533:
                return port
    raise RuntimeError("no two adjacent free ports")


def preflight(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": str(bin_dir), "SLURM_TEST_SBIN": "", "SLURM_TEST_DIR": "/tmp",
               "TMPDIR": "/tmp", "SLURM_TEST_PORT": str(free_port_pair()), **env}
    return subprocess.run([BASH, str(LOCAL_SLURM), *(args or ("--preflight",))], env=environ,
                          capture_output=True, text=True, timeout=60)


def reason(done: subprocess.CompletedProcess) -> str:
    assert done.stdout.count("\n") == 1, (done.stdout, done.stderr)  # exactly one line for CI
    return done.stdout.strip()


def test_preflight_says_a_machine_with_root_slurm_and_free_ports_can_host(tmp_path):
    port = free_port_pair()
    done = preflight(fake_machine(tmp_path), SLURM_TEST_PORT=str(port))
    assert done.returncode == 0, done.stderr
    assert reason(done) == f"can host a test cluster: slurm-wlm 99.1, munge-9.9, ports {port}/{port + 1} free, under /tmp"


def test_preflight_without_root_cannot_host_and_the_normal_mode_stops_before_starting_anything(tmp_path):
    bin_dir = fake_machine(tmp_path, uid=1000)
    done = preflight(bin_dir)
    assert done.returncode == 77 and reason(done).startswith("not root (uid 1000)")
    started = preflight(bin_dir, "touch", str(tmp_path / "ran"))  # COMMAND mode: same check, status 2
    assert started.returncode == 2 and "local_slurm.sh: not root (uid 1000)" in started.stderr
    assert not (tmp_path / "ran").exists()


def test_preflight_installs_missing_slurm_with_apt_get_then_can_host(tmp_path):
    bin_dir = fake_machine(tmp_path, slurm=False, apt="installs")
    done = preflight(bin_dir)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert reason(done).startswith("can host a test cluster: slurmctld 99.1")  # the installed stub
    calls = (bin_dir / "apt.log").read_text().splitlines()
    assert calls[0].endswith("update -qq") and calls[1].endswith("install -y -qq --no-install-recommends slurm-wlm munge")
    assert "installing slurm-wlm and munge with apt-get" in done.stderr


@pytest.mark.parametrize("apt, why", [
    (None, "slurm-wlm/munge not installed (missing: munged slurmctld slurmd sbatch srun squeue scontrol "
           "sinfo scancel) and no apt-get here to install them"),
    ("fails", "and apt-get failed (exit 100: E: Unable to locate package slurm-wlm)"),
    ("hangs", "and apt-get did not finish within 1 s"),
])
def test_preflight_cannot_host_when_slurm_is_missing_and_not_installable(tmp_path, apt, why):
    start = time.monotonic()
    done = preflight(fake_machine(tmp_path, slurm=False, apt=apt), SLURM_TEST_APT_TIMEOUT="1")
    assert done.returncode == 77 and why in reason(done)
    assert time.monotonic() - start < 30  # the hanging apt-get was cut off by `timeout`


@pytest.mark.parametrize("busy", [0, 1])  # slurmctld's port, slurmd's (+1)
def test_preflight_cannot_host_when_a_port_is_in_use(tmp_path, busy):
    port = free_port_pair()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port + busy))
        listener.listen()
        done = preflight(fake_machine(tmp_path), SLURM_TEST_PORT=str(port))
    assert done.returncode == 77
    assert reason(done) == (f"port {port + busy} on 127.0.0.1 is in use (another slurmctld/slurmd?); "
                            "set SLURM_TEST_PORT to a free port")


def test_preflight_cannot_host_under_a_missing_or_too_long_temporary_directory(tmp_path):
    bin_dir = fake_machine(tmp_path)
    done = preflight(bin_dir, SLURM_TEST_DIR=str(tmp_path / "absent"))
    assert done.returncode == 77 and "is not a writable directory; set SLURM_TEST_DIR" in reason(done)
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    done = preflight(bin_dir, SLURM_TEST_DIR=str(deep))
    assert done.returncode == 77 and "too long for munge's socket path" in reason(done)


@pytest.mark.parametrize("setting", [{"SLURM_TEST_PORT": "68x17"}, {"SLURM_TEST_PORT": "80"},
                                     {"SLURM_TEST_APT_TIMEOUT": "ten"}])
def test_preflight_rejects_a_bad_setting_with_status_2(tmp_path, setting):
    done = preflight(fake_machine(tmp_path), **setting)
    (name, value), = setting.items()
    assert done.returncode == 2 and f"local_slurm.sh: {name}='{value}'" in done.stderr


# ---- .ci/run's branching, with stand-ins for make and the preflight -------------------------------

def fake_ci(tmp_path: Path, *, test_rc: int = 0, preflight: tuple[int, str] = (0, "can host"),
            slurm_rc: int = 0) -> tuple[subprocess.CompletedProcess, list[str]]:
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    (clone / "workflow" / "scripts").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", clone / ".ci" / "run")
    rc, line = preflight
    write_exe(clone / "workflow" / "scripts" / "local_slurm.sh",
              f'echo "preflight $*" >> {tmp_path}/calls; echo "{line}"; exit {rc}')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_exe(bin_dir / "make", f'echo "make $*" >> {tmp_path}/calls\n'
                                f'case "$1" in test) exit {test_rc};; test-slurm) exit {slurm_rc};; esac')
    done = subprocess.run([BASH, str(clone / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return done, calls


def test_ci_runs_make_test_first_and_stops_when_it_fails(tmp_path):
    done, calls = fake_ci(tmp_path, test_rc=2)
    assert done.returncode == 2 and calls == ["make test"]


def test_ci_skips_the_live_slurm_test_with_the_reason_when_the_machine_cannot_host_it(tmp_path):
    done, calls = fake_ci(tmp_path, preflight=(77, "not root (uid 1000): run as root"))
    assert done.returncode == 0 and calls == ["make test", "preflight --preflight"]
    assert "CI: live SLURM test skipped: not root (uid 1000): run as root" in done.stdout
    assert "CI: make test passed in 0 min" in done.stdout


@pytest.mark.parametrize("slurm_rc", [0, 1])
def test_ci_runs_the_live_slurm_test_when_it_can_and_fails_when_it_fails(tmp_path, slurm_rc):
    done, calls = fake_ci(tmp_path, slurm_rc=slurm_rc)
    assert calls == ["make test", "preflight --preflight", "make test-slurm"]
    assert done.returncode == slurm_rc
    assert ("CI: make test-slurm passed in 0 min" in done.stdout) == (slurm_rc == 0)
    assert ("CI: make test-slurm failed (status 1)" in done.stderr) == (slurm_rc == 1)


def test_ci_fails_when_the_preflight_breaks_unexpectedly(tmp_path):
    done, calls = fake_ci(tmp_path, preflight=(2, "local_slurm.sh: SLURM_TEST_PORT='x' is not a port"))
    assert done.returncode == 2 and calls == ["make test", "preflight --preflight"]
