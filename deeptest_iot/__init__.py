"""deeptest-iot: metamorphic, coverage-guided testing of camera neural networks."""

import os as _os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (no CUDA driver, CPU instruction sets) is noise for a test tool's
# users; errors that matter reach them as Python exceptions. Set before anything imports TensorFlow.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
