"""The decision core: catalog, tags, request translation, the decision, pricing, errors.

No framework imports and no I/O beyond reading catalog files.
"""
