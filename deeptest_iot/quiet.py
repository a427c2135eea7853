"""Silence the process's stderr (file descriptor 2) around C++ libraries that print start-up lines."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Send fd 2 to /dev/null inside the block: TensorFlow and LiteRT print from C++ (CUDA, oneDNN,
    XNNPACK lines) whatever their log levels say, burying the CLI's one line. DEEPTEST_TF_VERBOSE=1
    keeps them. An exception raised inside is reported after stderr is restored."""
    if os.environ.get("DEEPTEST_TF_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
