"""The terminal shows jssl's lines and warnings; library INFO logs only when asked for."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An orbax save and restore: the library logs many INFO lines (absl) while doing it.
_SCRIPT = """
import sys
from absl import app, flags
from jssl import logs

def main(argv):
  logs.configure()
  import numpy as np
  import orbax.checkpoint as ocp
  from absl import logging
  with ocp.CheckpointManager(sys.argv[1]) as mngr:
    mngr.save(1, args=ocp.args.StandardSave({"w": np.ones(3)}))
    mngr.wait_until_finished()
    mngr.restore(1, args=ocp.args.StandardRestore({"w": np.zeros(3)}))
  logging.warning("a warning still shows")
  print("jssl line")

app.run(main)
"""


def _run(tmp_path, *args, env=None):
  result = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "ckpt"), *args], cwd=ROOT, text=True,
                          capture_output=True, env=dict(os.environ, JAX_PLATFORMS="cpu", **(env or {})), timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout + result.stderr


def test_library_info_logs_hidden_by_default(tmp_path):
  out = _run(tmp_path)
  assert "jssl line" in out and "a warning still shows" in out
  assert not [line for line in out.splitlines() if line.startswith("I")], out[:2000]


def test_flag_or_environment_brings_them_back(tmp_path):
  flagged = _run(tmp_path / "a", "--library_logs")
  assert any(line.startswith("I") for line in _run(tmp_path / "c", "--verbosity=0").splitlines())
  assert any(line.startswith("I") and "checkpoint" in line.lower() for line in flagged.splitlines()), flagged[:2000]
  env = _run(tmp_path / "b", env={"JSSL_LIBRARY_LOGS": "1"})
  assert any(line.startswith("I") for line in env.splitlines())
