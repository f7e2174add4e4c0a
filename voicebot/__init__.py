"""voicebot: real-time voice-bot server for AI phone screening interviews."""

__version__ = "0.1.0"
