"""``nas export``: a searched network as plain code that needs only PyTorch.

``export_spec`` (write.py) writes one folder: ``model.py`` (one readable ``nn.Module`` generated from the spec,
layers spelled out, shapes in comments), ``train.py`` (a standalone full training script),
``arch.json``, the short-trained weights (``model.safetensors`` and a ``weights_only``-loadable
``model.pt``), ``model.onnx`` (fp16 graph, fp16 weights, inputs and outputs: what TensorRT's strong
typing needs), ``model_fp32.onnx``, ``README.md`` and ``export.json`` (what was written, from what).
``export_run`` picks a trial of a run dir (see docs/run_dir.md) and exports it.

The generated code is built only from a validated ArchSpec (integers from fixed ranges, strings
from fixed choices looked up in tables here) and from numbers formatted as floats; free text such as
a device name is stripped to [A-Za-z0-9 ._-]. Nothing a user wrote is pasted into code. The folder
is written next to the target and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

from nas.export.docs import readme_source, train_source
from nas.export.info import EXPORT_FILES, EXPORT_FORMAT, MANIFEST, ExportInfo, canonical_loss, safe_text
from nas.export.model_code import check_state_dict, map_state_dict, model_source
from nas.export.write import export_run, export_spec

__all__ = ["EXPORT_FILES", "EXPORT_FORMAT", "MANIFEST", "ExportInfo", "canonical_loss", "check_state_dict",
           "export_run", "export_spec", "map_state_dict", "model_source", "readme_source", "safe_text",
           "train_source"]
