"""The sans-I/O protocol core: pure functions from requests to URLs and from bytes to results.

Nothing in this package performs I/O or imports aiohttp or asyncio; every
query can be built and every answer parsed without a socket.
"""
