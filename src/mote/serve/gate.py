"""The next batch is what came while the model was busy: a gate in front of Ray Serve's ``@serve.batch``.

Ray Serve's batcher (2.60) seals a batch once ``batch_wait_timeout_s`` has passed since its first request, even
while the batch before it still runs: the sealed batch then waits for the running one, and whatever arrives later
goes into a batch after it. A loaded replica whose forward takes tens of milliseconds therefore runs many small
batches back to back (32 concurrent one-text clients on ``mote serve`` without this gate: 1.6 texts per batch on
average, measured 2026-12-07), and the wait itself delays every lone request.

:class:`IdleGate` holds requests back while a batch runs. When it ends, everything that arrived meanwhile enters
the batcher in one turn of the event loop and becomes the next batch; on an idle replica a request enters at once,
with no wait (``DEFAULT_BATCH_WAIT_S``). That is continuous batching, as text-embeddings-inference does it, on
Ray Serve's own batcher. ``tests/test_serve.py::test_the_gate_makes_the_next_batch_of_what_came_while_busy``
checks both halves: with the gate the next batch is everything that came, and without it Ray Serve still seals
small batches (if Ray changes that, the test says so and the gate can go).

Example:
    >>> import asyncio
    >>> async def demo():
    ...     gate = IdleGate()
    ...     async with gate.running():          # a batch runs: callers of gate.wait() are held
    ...         held = asyncio.create_task(gate.wait())
    ...         await asyncio.sleep(0)
    ...         busy = not held.done()
    ...     await held                           # the batch ended: they all go on
    ...     return busy
    >>> asyncio.run(demo())
    True
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

DEFAULT_BATCH_WAIT_S = 0.0  # behind the gate a batch need not wait to fill: the busy time fills it


class IdleGate:
    """Open while no batch runs. ``await wait()`` before a request's rows enter the batcher; the batch method runs
    its forward inside ``async with running():``. One per replica (an event of the replica's event loop)."""

    def __init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()

    async def wait(self) -> None:
        """Return at once on an idle replica, else when the running batch ends."""
        await self._idle.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()
