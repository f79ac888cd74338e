"""The user's own networks as baselines (``--baseline NAME=model.onnx``): checked, timed, and judged twice.

``load.py`` checks each graph before anything is written; ``quality.py`` validates a graph as the user has
it (ONNX Runtime) and retrains it from scratch with the search's short training where it converts to
PyTorch; ``run.py`` measures and evaluates them into run.json's ``baselines`` (docs/run_dir.md).
"""

from __future__ import annotations
