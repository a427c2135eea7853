"""Image transformations (installed as ``deeptest_iot.transforms``)."""
