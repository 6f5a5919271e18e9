"""pystack: Compose stacks on a container engine written in Python.

This module stays import-free on purpose: every CLI command pays only for what it uses.
"""
__version__ = "0.1.0"
