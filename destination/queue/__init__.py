"""4. Queue: the durable outbox, dead letters, delivery log and shared state, on SQLite or Postgres.

`outbox` is the interface and its types; `connect` chooses a backend. May import `payload` and
`errors`; never a stage above it.
"""
