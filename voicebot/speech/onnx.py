"""onnxruntime sessions for the small speech models (Silero VAD, smart-turn).

One session per model per process, single-threaded (inter- and intra-op), so that many calls
share a model and two cores are not oversubscribed by per-inference thread pools.
"""

from __future__ import annotations

import onnxruntime


def cpu_session(path: str) -> onnxruntime.InferenceSession:
    """A single-threaded CPU inference session for the model at ``path``."""
    options = onnxruntime.SessionOptions()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(
        path, sess_options=options, providers=["CPUExecutionProvider"]
    )
