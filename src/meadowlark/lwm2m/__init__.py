"""Pure LwM2M protocol model: paths, nodes, object models and content-format codecs.

Nothing in this package performs I/O or uses asyncio.
"""
