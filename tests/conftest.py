"""Fixtures shared by every tier of the test suite."""
