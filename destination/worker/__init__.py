"""5. Worker: claim from the queue, batch, send to Metronome's /v1/ingest, then ack, retry, split or dead-letter.

May import `queue`, `payload`, `ops` and `errors`; never `intake`, `admin` or `app`.
"""
