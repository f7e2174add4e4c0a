"""voicebot: real-time voice-bot server for AI phone screening interviews."""

import os as _os

# numpy's OpenBLAS starts a worker thread per extra core that spins while it waits for work.
# The server's matrix work is small (log-mel filter banks) and runs in threads of its own, so a
# spinning BLAS helper only takes CPU from the calls: measured 0.15 of a core at 10 calls.
# Set before numpy is first imported; an explicit setting in the environment wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
