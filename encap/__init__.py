"""Encapsulation for pod routes: decide direct / IP-in-IP / VXLAN per route, derive the VXLAN
L2 state, and keep the tunnel devices in shape.

Rules:
1. ``model``, ``decide`` and ``vxlan`` are pure (values in, values out); ``devices`` is the only
   module that talks to the kernel (pyroute2).
2. Nothing here imports ``bgpd``: callers translate their own values into ours.
"""
