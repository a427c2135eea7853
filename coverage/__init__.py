"""Coverage criteria (installed as ``deeptest_iot.coverage``)."""
