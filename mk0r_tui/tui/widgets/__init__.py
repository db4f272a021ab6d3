"""Dashboard widgets: the session list, provider panels, latency history and the event log."""
