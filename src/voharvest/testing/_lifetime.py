"""The lifetime the fake servers share: ``start()``/``stop()``, and ``async with`` over them."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """An async context manager made of ``start()`` (returning the object) and ``stop()``."""

    async def start(self) -> Self:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
