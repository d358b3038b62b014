"""Settings for the whole suite.

Hypothesis: ``ci`` (default) is derandomized and has no deadline, so a run is reproducible and a slow CI
machine fails no example by time alone; ``HYPOTHESIS_PROFILE=dev`` explores more.

Every test starts from the same seeds of torch's, Python's and NumPy's global generators, so a test
that draws unseeded random data (``torch.randn(...)``) sees the same values in every run and in any
order of tests: a failure reproduces, and a rare draw cannot make a run red by chance.
"""

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _same_random_draws_in_every_run():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
