"""The routing core's tables: Adj-RIB-In, Loc-RIB with the decision process, export rules,
Adj-RIB-Out, policy and graceful-restart bookkeeping. Pure: no IO, no clock, no sessions."""
