"""storelens: in-store retail sensing and personalization."""

__version__ = "0.1.0"
