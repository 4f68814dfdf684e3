"""Kernel route programming: ``plan`` (pure: best routes + encapsulation -> desired kernel
routes, and the diff) and ``netlink`` (IO: batched RTM_NEWROUTE/RTM_DELROUTE, dump, reconcile).
"""
