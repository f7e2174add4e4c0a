"""Outbound interview campaigns: a job's candidates called by the server (issue 20)."""
