"""Sans-IO BFD (RFC 5880 asynchronous mode; RFC 5881 single hop, RFC 5883 multihop).

Rules:
1. Pure: imports nothing of bgpd but itself; no IO, no clock, no randomness (passed in).
2. ``packet`` is the codec and the receive checks; ``fsm`` is one session's state machine as a
   transition table. A malformed packet is dropped and counted, never fatal (RFC 5880 §6.8.6).
"""
