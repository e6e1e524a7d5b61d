"""SMPP 3.4 SMSC simulator (docs/simulator.md).

Modules, one job each: config (TOML Structs), server (listener, accounts, messages),
connection (one ESME: reader/writer/housekeeping around a Session), handlers (answers per
request), receipts (outcome, delay, receipt PDU), delivery (receiver routing, hold, retry),
faults (misbehaviours), mo (mobile-originated messages), timers (one heap for every delay),
store (bounded message ring), ids (message ids), control (the HTTP control API, served by
gateway.api.httpserver), recorder (--record), stats (counters), cli. Logging (with number
masking) is gateway.logs. Both are leaf modules shared with the gateway; nothing of the
gateway's business layers is imported.
"""
