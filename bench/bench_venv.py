"""Runs a bench script in .venv-bench (made from bench/requirements.txt on first use): call `enter(__file__)`
before importing numpy, onnxruntime or requests."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-bench")


def enter(script):
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", "-r", os.path.join(ROOT, "bench", "requirements.txt")])
    os.execv(python, [python, os.path.abspath(script), *sys.argv[1:]])
