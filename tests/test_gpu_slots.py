"""``--device cuda:any``: training processes share a machine's GPUs through flock'ed slot files
(lmmvae.training.gpu_slots). CPU only: the devices are counted, never used, so fake device counts stand in."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path

import pytest
import torch

from lmmvae.errors import ConfigError
from lmmvae.training import gpu_slots, runtime
from lmmvae.training.checks import config_from_dict

REPO = Path(__file__).resolve().parents[1]
# a claimant: takes a slot, prints "device slot", then holds it until killed or its stdin closes
WORKER = """
import sys
from lmmvae.training.gpu_slots import claim
slot = claim({n}, {per}, {lock_dir!r}, poll_s=0.05, log_every_s=0.2)
print(slot.device, slot.slot, flush=True)
sys.stdin.read()
"""


def start(lock_dir: Path, n: int, per: int) -> subprocess.Popen:
    code = WORKER.format(n=n, per=per, lock_dir=str(lock_dir))
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claimed(proc: subprocess.Popen) -> tuple[int, int]:
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    device, slot = map(int, line.split())
    return device, slot


def finish(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout, p.stderr):
            stream.close()


@pytest.mark.parametrize("per", [2, 4])
def test_concurrent_claimants_get_distinct_slots_spread_evenly_over_the_devices(tmp_path, per):
    procs = [start(tmp_path, 2, per) for _ in range(4)]  # started together: their claims race
    try:
        pairs = [claimed(p) for p in procs]
        assert len(set(pairs)) == 4  # no slot given twice
        assert Counter(d for d, _ in pairs) == {0: 2, 1: 2}  # least-loaded first: 2 and 2, also of 2 x 4
        assert all(0 <= s < per for _, s in pairs)
        # the four are held: of 2 x 2 nothing is left; of 2 x 4 a fifth goes to device 0 (2 free each)
        left = gpu_slots.try_claim(2, per, tmp_path)
        assert (left is None) if per == 2 else (left.device == 0 and (0, left.slot) not in pairs)
        if left is not None:
            left.release()
    finally:
        finish(procs)


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_slot_is_free_again_when_its_process_ends(tmp_path, how):
    holder = start(tmp_path, 1, 1)
    try:
        assert claimed(holder) == (0, 0)
        assert gpu_slots.try_claim(1, 1, tmp_path) is None  # held by the other process
        if how == "exit":
            holder.stdin.close()  # the worker returns normally
        else:
            holder.kill()  # SIGKILL: no cleanup code runs; the kernel drops the lock
        holder.wait(timeout=30)
        slot = gpu_slots.try_claim(1, 1, tmp_path)
        assert slot is not None and (slot.device, slot.slot) == (0, 0)
        slot.release()
    finally:
        finish([holder])


def test_a_fifth_claimant_waits_then_takes_the_slot_that_frees(tmp_path):
    holders = [start(tmp_path, 2, 2) for _ in range(4)]
    waiter = None
    try:
        pairs = [claimed(p) for p in holders]
        waiter = start(tmp_path, 2, 2)
        log = waiter.stderr.readline()  # its first try failed (blocks until the waiter says so)
        assert "all 2 slots of each of 2 GPU(s) are taken" in log and gpu_slots.JOBS_PER_GPU_ENV in log
        time.sleep(0.6)
        assert waiter.poll() is None  # still waiting (and has not printed a claim)
        victim = pairs.index((1, 0))
        holders[victim].kill()
        assert claimed(waiter) == (1, 0)
        waiter.stdin.close()
        waiter.wait(timeout=30)
        log += waiter.stderr.read()
        assert len(log.strip().splitlines()) >= 2  # one line per log interval (0.2 s here) while it waited
    finally:
        finish(holders + ([waiter] if waiter else []))


def test_in_one_process_each_claim_takes_another_slot_and_release_frees_it(tmp_path):
    a = gpu_slots.try_claim(2, 1, tmp_path)
    b = gpu_slots.try_claim(2, 1, tmp_path)
    assert (a.device, b.device) == (0, 1) and gpu_slots.try_claim(2, 1, tmp_path) is None
    b.release()
    with gpu_slots.try_claim(2, 1, tmp_path) as c:
        assert c.device == 1
    a.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claim.lock", "cuda0.slot0.lock", "cuda1.slot0.lock"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_any_without_cuda_is_the_one_line_error_of_cuda():
    with pytest.raises(ConfigError) as err:
        runtime.choose_device("cuda:any")
    assert str(err.value) == "device 'cuda:any' requested but CUDA is not available here; use --device cpu"
    assert str(err.value).replace("'cuda:any'", "'cuda'") == _message_of("cuda")  # the same as `cuda`


def _message_of(device: str) -> str:
    with pytest.raises(ConfigError) as err:
        runtime.choose_device(device)
    return str(err.value)


def test_device_spellings_are_checked_in_the_model_config():
    assert config_from_dict({"device": "cuda:any"}).device == "cuda:any"
    with pytest.raises(ConfigError, match=r"^m\.yaml: device 'gpu' is not a valid device \(auto, .*cuda:any\)$"):
        config_from_dict({"device": "gpu"}, where="m.yaml")


def test_jobs_per_gpu_must_be_a_positive_integer(monkeypatch):
    monkeypatch.setenv(gpu_slots.JOBS_PER_GPU_ENV, "0")
    with pytest.raises(ConfigError, match="LMMVAE_JOBS_PER_GPU='0': expected a positive integer"):
        gpu_slots.jobs_per_device_from_env()
    monkeypatch.setenv(gpu_slots.JOBS_PER_GPU_ENV, "3")
    assert gpu_slots.jobs_per_device_from_env() == 3
    monkeypatch.delenv(gpu_slots.JOBS_PER_GPU_ENV)
    assert gpu_slots.jobs_per_device_from_env() == gpu_slots.DEFAULT_JOBS_PER_GPU


def test_choose_device_cuda_any_claims_once_per_process_on_fake_gpus(tmp_path, monkeypatch, capsys):
    """The runtime side with torch.cuda faked (2 visible GPUs, 1 slot each): a slot named by the
    GPU's UUID, the log line, and the same device on a second call (no second slot)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda k: types.SimpleNamespace(name="Fake GPU", uuid=f"uuid-{k}"))
    monkeypatch.setenv(gpu_slots.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(gpu_slots.JOBS_PER_GPU_ENV, "1")
    monkeypatch.setattr(runtime, "_held_slot", None)
    first = gpu_slots.try_claim(2, 1, tmp_path, names=["gpu-uuid-0", "gpu-uuid-1"])  # another process's
    assert first.device == 0
    try:
        assert runtime.choose_device("cuda:any") == torch.device("cuda", 1)
        assert runtime.choose_device("cuda:any") == torch.device("cuda", 1)  # the same slot, reused
        assert gpu_slots.try_claim(2, 1, tmp_path, names=["gpu-uuid-0", "gpu-uuid-1"]) is None
        out = capsys.readouterr().out
        assert out.count("cuda:any -> cuda:1 (Fake GPU; GPU 2 of 2 visible, slot 1 of 1") == 1
        assert (tmp_path / "gpu-uuid-1.slot0.lock").exists()
    finally:
        first.release()
        runtime._held_slot.release()


def test_the_workflow_config_device_cuda_any_reaches_every_training_job(tmp_path):
    """profiles/gpu on several GPUs (its comment): `--config device=cuda:any --resources gpu=16`
    plans every neural training with gpu=1 and `--device cuda:any`; other spellings are refused."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    base = [snakemake, "--dry-run", "--printshellcmds", "--directory", str(tmp_path), "--workflow-profile",
            "profiles/gpu", "--configfile", str(REPO / ".test" / "config.yaml")]
    done = subprocess.run(base + ["--config", "device=cuda:any", "--resources", "gpu=16"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    fits = re.findall(r"rule fit(?:_predictions)?:\n(?:.*\n)*?\s+resources: (.*)\n(?:.*\n)*?Shell command: (.*)", out)
    assert any("gpu=1" in r for r, _ in fits)  # a neural training asks for one of the 16 slots,
    assert all("gpu=1" in r or "gpu=0" in r for r, _ in fits)  # a classical row (no GPU) for none
    assert all("--device cuda:any" in cmd for _, cmd in fits)
    done = subprocess.run(base + ["--config", "device=cuda:2"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "device: 'cuda:2' is not one of cpu, cuda, cuda:any" in done.stdout + done.stderr


def test_a_planted_symlink_or_foreign_lock_directory_is_refused(tmp_path):
    """The default lock directory sits in the shared temporary directory: a symlink planted there
    is not followed, and a lock directory that is a symlink is refused in one line."""
    from lmmvae.errors import ConfigError
    from lmmvae.training.gpu_slots import try_claim

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "cuda0.slot0.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="a symlink where a GPU slot lock file belongs"):
        try_claim(1, 1, locks)
    assert victim.read_text() == "keep"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="not a directory of this user"):
        try_claim(1, 1, tmp_path / "linked")

