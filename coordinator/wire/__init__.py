"""The coordinator and its providers over libp2p: the request/response transport, the
job protocol it sends (offers, assignments, reveal requests) and the reports it receives."""
