"""Beside the pipeline: a local Metronome for development and tests, served on its own port.

Imports only `payload` (exact numbers); it knows nothing of the rest of the service.
"""
