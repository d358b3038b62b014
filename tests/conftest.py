"""Hypothesis settings for the whole suite: ``ci`` (default) is derandomized and has no deadline, so a run
is reproducible and a slow CI machine fails no example by time alone; ``HYPOTHESIS_PROFILE=dev`` explores more."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
