"""deeptest-iot: metamorphic, coverage-guided testing of camera neural networks."""

__version__ = "0.1.0"
