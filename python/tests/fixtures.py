"""Values the BEAM side hands to the Python tests before running them."""

from __future__ import annotations

from typing import Any

#: Filled in by test/python_test.exs: a pid, a reference and their copies.
VALUES: dict[str, Any] = {}
