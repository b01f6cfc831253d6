"""Wake-ups between components: "something about job X changed".

Anyone who changes a job calls :meth:`Signals.fire`; waiters (a job's driver task, event
streams) block in :meth:`Signals.wait`. Each key counts its fires, so a waiter that
remembers the count it last saw (``since``) never misses a fire that happened while it
was busy; waiters always re-read the store after waking.
"""

from __future__ import annotations

import trio


class Signals:
    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}
        self._count: dict[str, int] = {}

    def generation(self, key: str) -> int:
        return self._count.get(key, 0)

    def fire(self, key: str) -> None:
        self._count[key] = self._count.get(key, 0) + 1
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    async def wait(self, key: str, timeout_s: float, since: int | None = None) -> bool:
        """Wait for a fire of ``key`` after generation ``since`` (default: from now).

        Returns False when ``timeout_s`` passed first.
        """
        if since is not None and self.generation(key) > since:
            return True
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = trio.Event()
        with trio.move_on_after(timeout_s):
            await event.wait()
            return True
        return False
