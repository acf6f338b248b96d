"""How deep the property-based (hypothesis) tests dig: bounded and repeatable by default, deep on request.

Default (CI and `make test`): each property runs its bounded example count with a fixed
derivation (`derandomize`), so a run is repeatable and fast. `ATLAS_FUZZ=nightly` multiplies the
counts by `NIGHTLY_FACTOR` and draws fresh random examples each run (`make test-fuzz`).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

NIGHTLY = os.environ.get("ATLAS_FUZZ", "").strip().lower() == "nightly"
NIGHTLY_FACTOR = 50


def fuzz_settings(examples: int) -> settings:
    """Settings for one property: `examples` in CI, `examples * NIGHTLY_FACTOR` at night."""
    return settings(
        max_examples=examples * NIGHTLY_FACTOR if NIGHTLY else examples,
        derandomize=not NIGHTLY,
        deadline=None,  # a loaded machine; the properties check their own time limits
        database=None,  # no example database left in the work tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
