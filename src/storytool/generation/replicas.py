"""This process among the other replicas: its lease, its cancel inbox, and who is still alive.

Every replica holds a lease in Redis (``{prefix}:instance:{id}``, a key that expires after
``instance_lease_s`` unless renewed every ``instance_heartbeat_s``). The lease lives in Redis
rather than in a database table because Redis already expires keys on its own clock: no replica
compares its clock with another's, and the database sees no heartbeat writes.

Cancels travel over pub/sub. Each replica listens on its inbox channel
``{prefix}:inbox:{id}`` and on the shared ``{prefix}:replicas``; the messages are JSON objects::

    {"kind": "cancel", "conversation_id", "request_id", "reply_to"}   stop the local task
    {"kind": "ack", "request_id"}                                     the owner received it
    {"kind": "left", "instance_id"}     (shared) a draining replica has saved its stories and
                                        given up its lease: adopt them now, not at the next beat

Pub/sub delivers at most once, and only to whoever listens at that moment, so the sender resends
a cancel that is not acknowledged in ``cancel_ack_timeout_s``; an acknowledgement can be lost as
well, which is why :class:`StoryService` also watches the conversation's terminal event and
stops waiting at whichever comes first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("storytool.replicas")

RECONNECT_WAIT_S = 0.5
"""Pause before listening again after Redis dropped the subscription: short, since cancels sent
meanwhile are lost (their senders resend them)."""


class Replicas:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        instance_id: str,
        lease_s: float,
        heartbeat_s: float,
        ack_timeout_s: float,
        on_cancel: Callable[[str], None],
        on_left: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.instance_id = instance_id
        self._lease_ms = max(1, int(lease_s * 1000))
        self._heartbeat_s = heartbeat_s
        self._ack_timeout_s = ack_timeout_s
        self._on_cancel = on_cancel
        self._on_left = on_left
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def _inbox(self, instance_id: str) -> str:
        return f"{self._prefix}:inbox:{instance_id}"

    def _lease(self, instance_id: str) -> str:
        return f"{self._prefix}:instance:{instance_id}"

    @property
    def _everyone(self) -> str:
        return f"{self._prefix}:replicas"

    async def start(self) -> None:
        """Takes the lease and listens to the inbox before the first request is served; the
        lease is renewed on its own beat, so slow recovery work cannot let it lapse."""
        await self._renew()
        self._listener = asyncio.create_task(self._listen(), name="replica-inbox")
        self._heartbeat = asyncio.create_task(self._beat(), name="replica-lease")
        await self._subscribed.wait()

    async def _renew(self) -> None:
        await self._redis.set(self._lease(self.instance_id), "1", px=self._lease_ms)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self._renew()
            except (RedisError, OSError):
                logger.warning("could not renew the lease of %s", self.instance_id, exc_info=True)

    async def dead(self, instance_ids: Iterable[str]) -> set[str]:
        """Those of ``instance_ids`` whose lease has expired."""
        others = [instance for instance in instance_ids if instance != self.instance_id]
        if not others:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for instance in others:
                pipe.exists(self._lease(instance))
            alive = await pipe.execute()
        return {instance for instance, live in zip(others, alive, strict=True) if not live}

    async def peers_alive(self) -> bool:
        """Whether any other replica holds a lease now."""
        async for key in self._redis.scan_iter(match=self._lease("*"), count=100):
            if key != self._lease(self.instance_id):
                return True
        return False

    async def leave(self) -> None:
        """Gives up the lease, then tells the others, who adopt this replica's stories at once."""
        await self._redis.delete(self._lease(self.instance_id))
        message = {"kind": "left", "instance_id": self.instance_id}
        await self._redis.publish(self._everyone, json.dumps(message))

    async def stop_remote(
        self, conversation_id: str, owner: str, ended: asyncio.Future[None]
    ) -> None:
        """Sends the cancel to ``owner`` until it acknowledges, then waits for ``ended`` (the
        terminal event); returns as soon as ``ended`` is done, acknowledged or not. The caller
        bounds the whole wait."""
        request_id = uuid.uuid4().hex
        acked = asyncio.get_running_loop().create_future()
        self._acks[request_id] = acked
        message = {
            "kind": "cancel",
            "conversation_id": conversation_id,
            "request_id": request_id,
            "reply_to": self.instance_id,
        }
        try:
            while not acked.done():
                await self._send(owner, message)
                await asyncio.wait(
                    [acked, ended], timeout=self._ack_timeout_s, return_when="FIRST_COMPLETED"
                )
                if ended.done():
                    return
            await ended
        finally:
            self._acks.pop(request_id, None)

    async def _send(self, instance_id: str, message: dict[str, Any]) -> None:
        """Publishes to a replica's inbox; a message nobody receives is simply lost."""
        await self._redis.publish(self._inbox(instance_id), json.dumps(message))

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._inbox(self.instance_id), self._everyone)
                self._subscribed.set()
                async for message in pubsub.listen():
                    await self._receive(json.loads(message["data"]))
            except (RedisError, OSError, ValueError, KeyError):
                logger.warning("the replica inbox failed; listening again", exc_info=True)
                await asyncio.sleep(RECONNECT_WAIT_S)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _receive(self, message: dict[str, Any]) -> None:
        if message.get("kind") == "cancel":
            self._on_cancel(message["conversation_id"])
            ack = {"kind": "ack", "request_id": message["request_id"]}
            await self._send(message["reply_to"], ack)
        elif message.get("kind") == "left":
            if message.get("instance_id") != self.instance_id:
                self._on_left()
        elif message.get("kind") == "ack":
            acked = self._acks.get(message["request_id"])
            if acked is not None and not acked.done():
                acked.set_result(None)

    async def aclose(self) -> None:
        """Stops listening and gives up the lease: a replica that stopped cleanly has saved its
        stories, so there is nothing for the others to recover."""
        tasks = [task for task in (self._listener, self._heartbeat) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._redis.delete(self._lease(self.instance_id))
        except RedisError:
            logger.warning("could not give up the lease of %s", self.instance_id)
