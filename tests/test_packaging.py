"""A wheel built from the checkout works outside it: installed into an empty virtual environment, its
``decaylab prepare`` tokenizes the embedded corpus (package data) in an empty folder."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{args}: {res.stderr[-3000:]}"
    return res


def test_wheel_in_an_empty_venv_prepares_the_embedded_corpus(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", REPO)
    wheel = next((tmp_path / "dist").glob("decaylab-*.whl"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout is not on the path
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, env=env)
    # then the dependencies (torch, transformers, ...) from this environment, but not its decaylab: a
    # path added by a .pth file has its own .pth files (the editable install's finder) ignored
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages() + [sysconfig.get_paths()["purelib"]]))

    empty = tmp_path / "empty"
    empty.mkdir()
    where = run(python, "-c", "import decaylab; print(decaylab.__file__, decaylab.__version__)", cwd=empty, env=env)
    assert where.stdout.startswith(str(purelib / "decaylab")), where.stdout
    run(venv / "bin" / "decaylab", "prepare", "--out", "ds", "--vocab-size", "300", "--max-docs", "50",
        cwd=empty, env=env)
    manifest = json.loads((empty / "ds" / "manifest.json").read_text())
    assert manifest["format"] == "decaylab-tokens" and (empty / "ds" / "tokenizer.json").is_file()
