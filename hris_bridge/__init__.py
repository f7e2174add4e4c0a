"""The HR-system bridge: durable voicebot events to HR systems as Standard Webhooks.

See ``hris_bridge/README.md``: delivery semantics, signing, endpoints, the CLI
(``python -m hris_bridge``), the ATS mapping and the example receiver.
"""
