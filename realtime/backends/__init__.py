"""Inference backends; each module defines ``BACKEND``, a ``realtime.engine.Backend``."""
