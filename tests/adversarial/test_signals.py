"""Signals sent to a real ``clipterm generate`` process, a dropped terminal, kill -9 and a full
disk: the exit code, the message, and a run.json that lists every finished sample on disk."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TIMEOUT = 240  # seconds for anything to happen on a loaded 2-core machine


def start(args: list[str], out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "clipterm", "generate", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def wait_for(predicate, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended ({proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.1)
    if proc is not None:
        proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def run_dir_of(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def finished(out: Path, index: int) -> bool:
    return out.exists() and any(out.glob(f"*/sample-{index:05d}.png"))


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def on_disk(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob("sample-*.png"))


def listed(info: dict) -> list[str]:
    return sorted(s["file"] for s in info["samples"])


LONG_RUN = ["-n", "40", "--batch", "2", "--steps", "300"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                           (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_stops_after_the_step_and_keeps_every_finished_sample(tiny_pack, tmp_path, sig, code):
    out = tmp_path / "out"
    proc = start(["--model", str(tiny_pack), *LONG_RUN], out)
    wait_for(lambda: finished(out, 1), "the first batch", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    run_dir = run_dir_of(out)
    info = record(run_dir)
    assert info["status"] == "incomplete"
    assert 2 <= info["n_done"] < 40
    assert listed(info) == on_disk(run_dir) and len(on_disk(run_dir)) == info["n_done"]
    name = signal.Signals(sig).name
    assert f"stopped by {name}: {info['n_done']} of 40 samples kept in {run_dir}" in err
    assert not list(run_dir.glob(".*.tmp"))


def test_a_second_signal_aborts_at_once_and_the_record_stays_true(tiny_pack, tmp_path):
    """Two signals at once (sent while the process is stopped, delivered together): the run
    aborts mid-step; writes in progress complete; run.json says aborted and lists the files."""
    out = tmp_path / "out"
    proc = start(["--model", str(tiny_pack), *LONG_RUN], out)
    wait_for(lambda: finished(out, 1), "the first batch", proc)
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_dir = run_dir_of(out)
    info = record(run_dir)
    assert info["status"] == "aborted"
    assert listed(info) == on_disk(run_dir) and len(on_disk(run_dir)) >= 2
    assert f"aborted: {len(on_disk(run_dir))} of 40 samples kept in {run_dir}" in err
    assert not list(run_dir.glob(".*.tmp"))


def test_kill_9_leaves_a_record_of_the_finished_batches(tiny_pack, tmp_path):
    out = tmp_path / "out"
    proc = start(["--model", str(tiny_pack), *LONG_RUN], out)
    wait_for(lambda: finished(out, 3), "two batches", proc)
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    run_dir = run_dir_of(out)
    info = record(run_dir)
    assert info["status"] == "running" and info["pid"] == proc.pid
    files, names = on_disk(run_dir), listed(info)
    assert set(names) <= set(files)
    assert len(set(files) - set(names)) <= 2  # at most the batch being written when it died
    assert len(names) >= 2


def test_a_signal_before_any_sample_keeps_the_record_and_a_partial_preview(tiny_pack, tmp_path):
    out = tmp_path / "out"
    proc = start(["--model", str(tiny_pack), "-n", "2", "--batch", "2", "--steps", "1000",
                  "--sampler", "ddpm"], out)
    wait_for(lambda: out.exists() and any(out.glob("*/run.json")), "the run folder", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, err
    run_dir = run_dir_of(out)
    info = record(run_dir)
    assert info["status"] == "incomplete" and info["samples"] == [] and info["n_done"] == 0
    assert "no sample finished (of 2)" in err
    assert (run_dir / "partial-grid.png").is_file()


def test_a_dropped_terminal_stops_the_run_and_keeps_the_record(tiny_pack, tmp_path):
    """The real SSH case: the run draws a progress bar on a terminal, the terminal goes away
    (SIGHUP, and every later write to it fails)."""
    out = tmp_path / "out"
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own on the pseudo-terminal
        os.environ.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        os.execv(sys.executable, [sys.executable, "-m", "clipterm", "generate", "--model",
                                  str(tiny_pack), *LONG_RUN, "--out", str(out)])
    try:
        deadline = time.time() + TIMEOUT
        while not finished(out, 1) and time.time() < deadline:
            try:
                os.read(fd, 65536)  # drain the progress bar
            except OSError:
                break
        assert finished(out, 1), "no batch finished"
    finally:
        os.close(fd)  # hang up: the kernel sends SIGHUP to the terminal's processes
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the process did not end after its terminal went away")
    assert os.WIFEXITED(status), f"killed by signal {os.WTERMSIG(status)}"
    assert os.WEXITSTATUS(status) == 129
    run_dir = run_dir_of(out)
    info = record(run_dir)
    assert info["status"] == "incomplete" and listed(info) == on_disk(run_dir)
    assert 2 <= info["n_done"] < 40


def test_a_full_disk_fails_the_run_and_keeps_the_samples(tmp_path):
    """A file size limit (what a full disk looks like to a process): the grid cannot be
    written. Exit 1, one line, every sample kept and listed, run.json marked failed."""
    out = tmp_path / "out"
    cmd = (f"ulimit -f 6; exec {sys.executable} -m clipterm generate --model digits -n 8 "
           f"--steps 3 -q --out {out}")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    run_dir = run_dir_of(out)
    assert lines == [f"clipterm: error: could not write the run folder: File too large; "
                     f"8 of 8 samples kept in {run_dir}"]
    info = record(run_dir)
    assert info["status"] == "failed" and "File too large" in info["error"]
    assert listed(info) == on_disk(run_dir) and len(on_disk(run_dir)) == 8
    assert not (run_dir / "grid.png").exists() and not list(run_dir.glob(".*.tmp"))
