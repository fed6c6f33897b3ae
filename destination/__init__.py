"""A Segment-style CDP destination that delivers usage events to Metronome's /v1/ingest."""

__version__ = "0.1.0"
