"""onnxruntime sessions for the small speech models (Silero VAD, smart-turn).

One session per model per process, so that many calls share a model. Silero runs on one thread
(a 32 ms window is too small to split). Smart-turn may split one inference over two threads:
its worker threads do not spin while waiting for work, so the split costs about 5 % more CPU
and takes 40 % off the wall time of a verdict whenever a core is free (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import onnxruntime


def cpu_session(path: str, threads: int = 1) -> onnxruntime.InferenceSession:
    """A CPU inference session for the model at ``path``, one inference on ``threads`` threads.

    With more than one thread, the pool's threads sleep between inferences instead of spinning
    (onnxruntime's default spins, burning a core the other models and the event loop need).
    """
    if threads < 1:
        raise ValueError(f"cpu_session: threads must be at least 1, got {threads}")
    options = onnxruntime.SessionOptions()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    if threads > 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(
        path, sess_options=options, providers=["CPUExecutionProvider"]
    )
