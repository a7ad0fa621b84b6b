"""Tests of the ``pybridge`` support module, run inside the embedded interpreter."""

from __future__ import annotations

import sys
import unittest

import pybridge


class FormatExceptionTest(unittest.TestCase):
    def test_includes_frames_and_the_message(self) -> None:
        def fail() -> None:
            raise ValueError("boom")

        try:
            fail()
        except ValueError as exc:
            text = pybridge.format_exception(exc)
        self.assertIn("in fail", text)
        self.assertTrue(text.rstrip().endswith("ValueError: boom"))

    def test_uses_an_explicit_traceback_when_given(self) -> None:
        try:
            raise KeyError("k")
        except KeyError as exc:
            tb = exc.__traceback__
            exc.__traceback__ = None
            text = pybridge.format_exception(exc, tb)
        self.assertIn("Traceback", text)


class TimeoutTest(unittest.TestCase):
    def test_is_not_caught_by_except_exception(self) -> None:
        self.assertTrue(issubclass(pybridge.Timeout, BaseException))
        self.assertFalse(issubclass(pybridge.Timeout, Exception))


class ReloadTest(unittest.TestCase):
    def test_imports_a_module_not_loaded_yet(self) -> None:
        sys.modules.pop("colorsys", None)
        pybridge.reload("colorsys")
        self.assertIn("colorsys", sys.modules)

    def test_reloads_a_loaded_module(self) -> None:
        import colorsys

        colorsys.ONE_THIRD = 0.0  # type: ignore[misc]
        pybridge.reload("colorsys")
        self.assertAlmostEqual(sys.modules["colorsys"].ONE_THIRD, 1.0 / 3.0)


if __name__ == "__main__":
    unittest.main()
