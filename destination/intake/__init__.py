"""1. Intake: receive a CDP's request, authenticate it, parse it, and run each event through the accept path.

The per-request pipeline (`pipeline`) drives the stages below it: mapping, payload, queue. It may
import those, `ops` and the top-level `errors` and `config`; never `worker`, `admin` or `app`.
"""
