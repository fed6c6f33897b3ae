"""3. Payload: what Metronome receives. The usage event's contract, its timestamps and exact numbers.

The bottom stage: imports only `errors`. Every other stage may import it.
"""
