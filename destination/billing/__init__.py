"""Beside the pipeline: will each usage event bill? The account's catalog, a pure matcher, and the
client that reads Metronome's API for them.

Below `intake` and `worker`, which use it; may import `queue` (where the catalog is shared),
`payload`, `ops`, `config` and `errors`. Web processes only read the catalog from the database;
the worker alone calls Metronome to refresh it.
"""
