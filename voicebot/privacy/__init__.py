"""Data protection: the audit log, retention (the daily purge) and a candidate's erasure.

* :mod:`voicebot.privacy.audit`: who read or changed which candidate's data and when; append-only,
  each entry hash-chained to the one before it (``voicebot audit verify``).
* :mod:`voicebot.privacy.retention`: per-class retention (recordings, transcripts, reports,
  events) and the purge that enforces it (daily in the server, ``voicebot purge``).
* :mod:`voicebot.privacy.erasure`: ``DELETE /api/candidates/{id}`` (PIPL art. 19/47, GDPR
  art. 17): a candidate's data removed everywhere, an anonymous tombstone kept.
"""
