"""Test-wide settings. In CI (CI=true) hypothesis draws the same examples on every run (derandomize), so a landing
cannot hinge on a lucky draw; on a developer's machine the draws stay random and keep finding new cases."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")
