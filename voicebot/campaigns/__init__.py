"""Outbound interview campaigns (issue 20): a job and a calling policy that dial candidates.

* :mod:`voicebot.campaigns.hours`: calling hours in the candidate's time zone and when to call
  again after a failed attempt (pure functions; the dialer codes against them).
* :mod:`voicebot.campaigns.store`: campaigns, candidates joining them and their counts, over
  the interview store's connection (:func:`~voicebot.campaigns.store.campaign_store`).
* :mod:`voicebot.campaigns.optouts`: the do-not-call list, keyed by a hash of the E.164 number
  (the dialer asks ``(await campaign_store(services)).do_not_call.is_opted_out(phone)`` when it
  claims an attempt).
* :mod:`voicebot.campaigns.cli`: ``voicebot campaigns ...`` (through the REST API).

The dialer (:mod:`voicebot.campaigns.dialer`, store queries in :mod:`voicebot.campaigns.attempts`)
claims due interviews as dial attempts and places the calls.

The REST routes are in :mod:`voicebot.api.campaigns` (``/api/campaigns``, ``/api/opt-outs``).
"""
