"""The sans-I/O protocol core: pure functions from requests to URLs and from bytes to results.

Nothing in this package performs I/O or imports aiohttp or asyncio; every
query can be built and every answer parsed without a socket.

The value readers the layers above share are public here: :func:`angle` (a
size or radius in degrees, from a number, a Quantity or text) and
:func:`position_degrees` (ICRS degrees from a SkyCoord or an (ra, dec) pair).
"""

from ._encoding import angle, is_skycoord, position_degrees

__all__ = ["angle", "is_skycoord", "position_degrees"]
