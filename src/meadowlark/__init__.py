"""Meadowlark: an LwM2M device and connectivity management platform."""

__version__ = "0.1.0"
