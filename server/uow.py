"""The unit of work: one ``AsyncSession`` and one transaction per request, job or hop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.keys import sessionmaker_key


@asynccontextmanager
async def unit_of_work(app: web.Application) -> AsyncIterator[AsyncSession]:
    """Commit when the block succeeds, roll back when it raises; services only flush."""
    async with app[sessionmaker_key]() as session, session.begin():
        yield session
