"""2. Mapping: the admin's language, compiled once and applied to every event, and its stored versions.

May import `payload` (exact numbers, timestamps) and `errors`; nothing that stores or sends.
"""
