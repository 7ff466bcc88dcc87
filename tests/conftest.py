"""Hypothesis profiles.

CI and the README's test command run the property tests with a fixed seed ("repeatable"), so a
green run stays green and a failure reproduces; hunting for new failures takes fresh random
examples, more of them with SLIDE_HYPOTHESIS_SCALE (see tests/test_properties.py):

    SLIDE_HYPOTHESIS_PROFILE=explore SLIDE_HYPOTHESIS_SCALE=10 python -m pytest tests/test_properties.py
"""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("SLIDE_HYPOTHESIS_PROFILE", "repeatable"))


def pytest_addoption(parser):
    parser.addoption("--fuzz-cases", type=int, default=25, dest="fuzz_cases",
                     help="cases per surface in tests/test_fuzz.py (CI: 25; a long run: 1500)")
