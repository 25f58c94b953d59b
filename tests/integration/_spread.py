"""Requests spread round robin over the embedded router and every Router actor (imported by the
integration tests that check what all the routers did together)."""

from __future__ import annotations

import asyncio

from api_model_management.errors import AMMError


async def run_spread(mm, requests):
    """Each request to the next of ``mm.complete`` and the Router actors' ``complete``; the
    results in request order, an ``AMMError`` in place of a refused or failed request."""
    routes = [mm.complete, *(r.complete.remote for r in mm.handles.routers)]

    async def one(i, r):
        try:
            return await routes[i % len(routes)](r)
        except AMMError as exc:
            return exc
    return await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
