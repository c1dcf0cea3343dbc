"""Property tests run the same examples on every run (the brief: tests are deterministic).

Hypothesis otherwise draws new random examples each run, so a CI run could fail on a case no
earlier run saw. Loaded before the test modules, so their ``settings(...)`` inherit it.
To explore new examples by hand: ``pytest --hypothesis-profile=explore``.
"""

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")
