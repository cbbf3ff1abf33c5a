"""The launch/ scripts' argument handling, through --dry-run (which prints the commands
and runs nothing): usage errors exit 2, arguments reach jssl.main intact, quoted."""
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"local": "launch/local.sh", "slurm": "launch/slurm_gpu.sbatch", "tpu": "launch/tpu_pod.sh"}


def _launch(script, *args, **env):
  return subprocess.run(["bash", SCRIPTS[script], *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, **env))


def _commands(result) -> list[list[str]]:
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def test_local_starts_one_process_per_index():
  result = _launch("local", "--dry-run", "3", "configs/quickstart.py", "runs/a b", "--config.total_steps=5",
                   "--config.data.name=two words", JSSL_PORT="1234", PYTHON="py")
  *starts, last = _commands(result)
  assert last == ["wait"] and len(starts) == 3
  for i, cmd in enumerate(starts):
    assert cmd[:3] == ["env", "JAX_PLATFORMS=cpu", "XLA_FLAGS=--xla_force_host_platform_device_count=1"]
    assert cmd[3:] == ["py", "-m", "jssl.main", "--coordinator_address=127.0.0.1:1234", "--num_processes=3",
                       f"--process_id={i}", "--config=configs/quickstart.py", "--workdir=runs/a b",
                       "--config.total_steps=5", "--config.data.name=two words", "&"]


def test_local_finds_a_free_port():
  ports = {cmd[6] for cmd in _commands(_launch("local", "--dry-run", "2", "c.py", "w", PYTHON=sys.executable))[:2]}
  assert len(ports) == 1 and int(ports.pop().rsplit(":", 1)[1]) > 0


def test_slurm_runs_srun_with_distributed():
  (cmd,) = _commands(_launch("slurm", "--dry-run", "configs/x.py", "/shared/run", "--config.seed=3", PYTHON="py"))
  assert cmd == ["srun", "py", "-m", "jssl.main", "--distributed", "--config=configs/x.py", "--workdir=/shared/run",
                 "--config.seed=3"]


def test_tpu_copies_then_runs_on_every_worker():
  copy, ssh = _commands(_launch("tpu", "--dry-run", "my-tpu", "us-central2-b", "configs/x.py", "gs://b/run",
                                "--config.data.name=two words"))
  assert copy[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and copy[-1] == "my-tpu:~/jssl"
  assert "--zone=us-central2-b" in copy and "--worker=all" in copy and copy[-2] == ROOT
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"] and "--worker=all" in ssh
  remote = ssh[-1].removeprefix("--command=")
  setup, train = remote.rsplit(" && ", 1)
  assert setup.startswith("cd ~/jssl && python3 -m pip install")
  assert shlex.split(train) == ["python3", "-m", "jssl.main", "--distributed", "--config=configs/x.py",
                                "--workdir=gs://b/run", "--config.data.name=two words"]


@pytest.mark.parametrize("script,args", [
    ("local", []), ("local", ["two", "c.py", "w"]), ("local", ["0", "c.py", "w"]), ("local", ["2", "c.py"]),
    ("local", ["2", "--config.x=1", "w"]), ("slurm", ["c.py"]), ("slurm", ["--config.x=1", "c.py", "w"]),
    ("tpu", ["tpu", "zone", "c.py"]), ("tpu", ["--zone=z", "tpu", "c.py", "w"])])
def test_bad_arguments_print_usage(script, args):
  for dry in ([], ["--dry-run"]):
    result = _launch(script, *dry, *args)
    assert result.returncode == 2 and result.stderr.startswith("usage:") and not result.stdout
