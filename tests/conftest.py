"""Test-suite-wide settings."""

from hypothesis import settings

# No per-example deadline. The suite runs on shared 2-core machines (CI, and next to
# benchmarks and valgrind), where an example that takes 20 ms on an idle core can take over
# 200 ms (hypothesis' default deadline). A property either holds or not; time limits
# belong to the benchmarks (bench/). Explicit @settings(...) inherit this.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")
