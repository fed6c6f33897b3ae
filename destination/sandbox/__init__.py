"""Beside the pipeline: a local Metronome for development and tests, served on its own port.

The billing loop in memory: ingest, customers, billable metrics, usage, events search, rate cards
and draft invoices, in the shapes of Metronome's spec. `ledger` holds the account; `matching` and
`rating` are the rules as pure functions; one module per group of routes; `server` wires them.
Imports only `payload` (exact numbers); it knows nothing of the rest of the service.
"""
