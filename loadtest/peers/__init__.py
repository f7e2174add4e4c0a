"""Peer bots: other ways of building the same phone interview, benchmarked against voicebot.

Each peer speaks the Twilio voice webhook + Media Streams contract, so :mod:`loadtest.caller`
drives it exactly as it drives voicebot. See ``loadtest/peers/README.md``.
"""
