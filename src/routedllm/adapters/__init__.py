"""Adapters that feed framework requests into the decision and carry records out.

Each subpackage imports its framework; nothing here is imported by ``routedllm`` itself.
"""
