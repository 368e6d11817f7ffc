"""The presence registry in Redis, shared by every instance (``REDIS_URL``).

Keys, under ``P = REDIS_CHANNEL_PREFIX``:

* ``P:instances`` -- sorted set: instance id -> its last heartbeat (Redis time, ms)
* ``P:instance:{instance}:conns`` -- set of ``"{room} {client}"`` it serves
* ``P:rooms`` -- set of rooms with members
* ``P:room:{room}:members`` -- sorted set: client id -> join order
* ``P:room:{room}:conn:{client}`` -- hash: instance, user_id, display_name,
  client_label, connected_at (ms), player (a ``PlayerSnapshot`` with the last
  synced pose), muted (``1`` once a moderator muted it, ``0`` after an unmute);
  its TTL is a lease its instance renews with every heartbeat
* ``P:room:{room}:entities:{owner}`` -- hash: entity id -> ``EntitySnapshot``;
  owner ``server`` (:data:`~presence.cluster.registry.SERVER_OWNER`) holds the
  server's entities, deleted with the room's other keys when it empties
* ``P:room:{room}:host`` -- the host's client id; ``P:room:{room}:seq`` -- join counter
* ``P:room:{room}:counters`` -- hash: messages (client messages handled, all instances)

Every change of membership or host is one Lua script, so two instances
joining or leaving the same room at once still agree on one host. The
scripts build key names from the prefix, which suits one Redis server or a
primary with replicas (not Redis Cluster).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from presence.cluster.registry import (
    Arrival,
    Connection,
    Departure,
    Heartbeat,
    RegistryUnavailable,
    RoomSnapshot,
    RoomView,
)
from presence.protocol import core_pb2 as pb
from presence.protocol.room import Player, RoomChanges
from presence.redis_client import redis_client

logger = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT = 2.0

_NOW = """
local SERVER_OWNER = 'server'
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function split(entry)
  local sp = string.find(entry, ' ', 1, true)
  return string.sub(entry, 1, sp - 1), string.sub(entry, sp + 1)
end
"""

# Remove one connection; hand the host role to the longest-present member
# that is not leaving with it (``departing``: "{room} {client}" -> true).
_LEAVE_FUNCTION = (
    _NOW
    + """
local function successor(members, room, departing)
  for _, member in ipairs(redis.call('ZRANGE', members, 0, -1)) do
    if not departing[room .. ' ' .. member] then return member end
  end
  return nil
end
local function leave(p, room, cid, inst, departing)
  local base = p .. ':room:' .. room
  local members = base .. ':members'
  local conn = base .. ':conn:' .. cid
  local owner = redis.call('HGET', conn, 'instance')
  -- Moved to another instance by a resume: not this instance's to remove.
  if inst ~= '' and owner and owner ~= inst then
    redis.call('SREM', p .. ':instance:' .. inst .. ':conns', room .. ' ' .. cid)
    return false
  end
  if inst == '' then inst = owner or '' end
  redis.call('SREM', p .. ':instance:' .. inst .. ':conns', room .. ' ' .. cid)
  if redis.call('ZREM', members, cid) == 0 then return false end
  redis.call('DEL', conn)
  local owned = base .. ':entities:' .. cid
  local entities = redis.call('HKEYS', owned)
  redis.call('DEL', owned)
  local hostkey = base .. ':host'
  local changed, newhost, player = 0, '', ''
  if redis.call('GET', hostkey) == cid then
    changed = 1
    local nxt = successor(members, room, departing)
    if nxt then
      newhost = nxt
      redis.call('SET', hostkey, newhost)
      player = redis.call('HGET', base .. ':conn:' .. newhost, 'player') or ''
    else
      redis.call('DEL', hostkey)
    end
  end
  if redis.call('ZCARD', members) == 0 then
    redis.call('DEL', members, hostkey, base .. ':seq', base .. ':counters',
      base .. ':entities:' .. SERVER_OWNER)
    redis.call('SREM', p .. ':rooms', room)
  end
  return {room, cid, changed, newhost, player, entities}
end
-- Remove every "{room} {client}" entry of owner_of (entry -> instance) at once:
-- the host role passes over all of them to a member who stays.
local function leave_all(p, owner_of)
  local out = {}
  for entry, inst in pairs(owner_of) do
    local room, cid = split(entry)
    local gone = leave(p, room, cid, inst, owner_of)
    if gone then table.insert(out, gone) end
  end
  return out
end
"""
)

# ARGV: prefix, room, client, instance, lease ms, "resume" or "", then hash
# field/value pairs. A resume of a connection still present moves it to the
# instance as it is (no new join order, player or host): "moved" is 1.
JOIN_LUA = (
    _NOW
    + """
local p, room, cid, inst, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local base = p .. ':room:' .. room
local members = base .. ':members'
local conn = base .. ':conn:' .. cid
-- An instance is registered by its first join or heartbeat, so it can be
-- swept even if it dies before it heart-beats; "fresh" tells it it was not.
local fresh = redis.call('ZADD', p .. ':instances', 'NX', now_ms(), inst)
local moved = 0
local entry = room .. ' ' .. cid
local present = redis.call('ZSCORE', members, cid) and redis.call('EXISTS', conn) == 1
if ARGV[6] == 'resume' and present then
  local old = redis.call('HGET', conn, 'instance')
  if old then redis.call('SREM', p .. ':instance:' .. old .. ':conns', entry) end
  redis.call('HSET', conn, 'instance', inst)
  moved = 1
else
  redis.call('ZADD', members, redis.call('INCR', base .. ':seq'), cid)
  redis.call('HSET', conn, 'instance', inst, unpack(ARGV, 7))
end
redis.call('PEXPIRE', conn, ttl)
redis.call('SADD', p .. ':instance:' .. inst .. ':conns', entry)
redis.call('SADD', p .. ':rooms', room)
local hostkey = base .. ':host'
local host = redis.call('GET', hostkey)
if (not host) or (not redis.call('ZSCORE', members, host)) then
  host = cid
  redis.call('SET', hostkey, cid)
end
local players, entities = {}, {}
for _, member in ipairs(redis.call('ZRANGE', members, 0, -1)) do
  local player = redis.call('HGET', base .. ':conn:' .. member, 'player')
  if player then table.insert(players, player) end
  for _, e in ipairs(redis.call('HVALS', base .. ':entities:' .. member)) do
    table.insert(entities, e)
  end
end
for _, e in ipairs(redis.call('HVALS', base .. ':entities:' .. SERVER_OWNER)) do
  table.insert(entities, e)
end
return {host, players, entities, fresh, moved}
"""
)

# ARGV: prefix, room. Every entity snapshot of the room, members' and the server's.
ENTITIES_LUA = """
local base = ARGV[1] .. ':room:' .. ARGV[2]
local out = redis.call('HVALS', base .. ':entities:server')
for _, cid in ipairs(redis.call('ZRANGE', base .. ':members', 0, -1)) do
  for _, e in ipairs(redis.call('HVALS', base .. ':entities:' .. cid)) do
    table.insert(out, e)
  end
end
return out
"""

# ARGV: prefix, room. Returns {host, {client, instance, user, name, label,
# connected at, muted}*, entity count}: one consistent reading of the room.
VIEW_LUA = """
local base = ARGV[1] .. ':room:' .. ARGV[2]
local rows = {}
local entities = redis.call('HLEN', base .. ':entities:' .. 'server')
for _, cid in ipairs(redis.call('ZRANGE', base .. ':members', 0, -1)) do
  local f = redis.call('HMGET', base .. ':conn:' .. cid,
    'instance', 'user_id', 'display_name', 'client_label', 'connected_at', 'muted')
  if f[1] then
    table.insert(rows, {cid, f[1], f[2] or '', f[3] or '', f[4] or '', f[5] or '0', f[6] or '0'})
  end
  entities = entities + redis.call('HLEN', base .. ':entities:' .. cid)
end
local messages = redis.call('HGET', base .. ':counters', 'messages') or '0'
return {redis.call('GET', base .. ':host') or '', rows, entities, messages}
"""

# ARGV: prefix, room, client, "1" or "0". Only a present connection's hash is
# written: a mute arriving after its leave must not bring the hash back.
SET_MUTED_LUA = """
local conn = ARGV[1] .. ':room:' .. ARGV[2] .. ':conn:' .. ARGV[3]
if redis.call('EXISTS', conn) == 0 then return 0 end
redis.call('HSET', conn, 'muted', ARGV[4])
return 1
"""

# ARGV: prefix, room, client, instance.
LEAVE_LUA = (
    _LEAVE_FUNCTION
    + """
return leave(ARGV[1], ARGV[2], ARGV[3], ARGV[4], {})
"""
)

# ARGV: prefix, room, messages handled, player count, (client, snapshot)*,
# entity count, (owner, entity, snapshot)*, then (owner, entity)* removed. Only
# present members are written: a late write never brings a departed one back.
WRITE_LUA = """
local p, room = ARGV[1], ARGV[2]
local base = p .. ':room:' .. room
local members = base .. ':members'
if tonumber(ARGV[3]) > 0 and redis.call('EXISTS', members) == 1 then
  redis.call('HINCRBY', base .. ':counters', 'messages', ARGV[3])
end
local i = 4
local players = tonumber(ARGV[i]); i = i + 1
for _ = 1, players do
  local conn = base .. ':conn:' .. ARGV[i]
  if redis.call('EXISTS', conn) == 1 then redis.call('HSET', conn, 'player', ARGV[i + 1]) end
  i = i + 2
end
local entities = tonumber(ARGV[i]); i = i + 1
local live = redis.call('EXISTS', members) == 1
for _ = 1, entities do
  if redis.call('ZSCORE', members, ARGV[i]) or (live and ARGV[i] == 'server') then
    redis.call('HSET', base .. ':entities:' .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
  end
  i = i + 3
end
while i < #ARGV do
  redis.call('HDEL', base .. ':entities:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 0
"""

# ARGV: prefix, instance, lease ms. Returns {1 if the instance was not
# registered (new, or swept while it was cut off), departures of connections
# whose lease ran out all the same (the instance stalled past it)}.
HEARTBEAT_LUA = (
    _LEAVE_FUNCTION
    + """
local p, inst, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local added = redis.call('ZADD', p .. ':instances', now_ms(), inst)
local expired = {}
for _, entry in ipairs(redis.call('SMEMBERS', p .. ':instance:' .. inst .. ':conns')) do
  local room, cid = split(entry)
  if redis.call('PEXPIRE', p .. ':room:' .. room .. ':conn:' .. cid, ttl) == 0 then
    expired[entry] = inst
  end
end
return {added, leave_all(p, expired)}
"""
)

# ARGV: prefix, lease ms. Every instance silent for longer than the lease loses
# its connections; the caller announces the departures.
SWEEP_LUA = (
    _LEAVE_FUNCTION
    + """
local p, lease = ARGV[1], tonumber(ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', p .. ':instances', '-inf', now_ms() - lease)
local owner_of = {}
for _, inst in ipairs(dead) do
  for _, entry in ipairs(redis.call('SMEMBERS', p .. ':instance:' .. inst .. ':conns')) do
    owner_of[entry] = inst
  end
end
local out = leave_all(p, owner_of)
for _, inst in ipairs(dead) do
  redis.call('DEL', p .. ':instance:' .. inst .. ':conns')
  redis.call('ZREM', p .. ':instances', inst)
end
return out
"""
)

# ARGV: prefix, instance, then the "{room} {client}" entries to keep. With
# nothing to keep the instance is removed too (shutdown).
RETIRE_LUA = (
    _LEAVE_FUNCTION
    + """
local p, inst = ARGV[1], ARGV[2]
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local conns = p .. ':instance:' .. inst .. ':conns'
local owner_of = {}
for _, entry in ipairs(redis.call('SMEMBERS', conns)) do
  if not keep[entry] then owner_of[entry] = inst end
end
local out = leave_all(p, owner_of)
if #ARGV == 2 then redis.call('ZREM', p .. ':instances', inst) end
return out
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _departure(row: list[Any]) -> Departure:
    room, client, changed, new_host, player, entities = row
    host: Player | None = None
    if int(changed) and _text(new_host):
        snapshot = pb.PlayerSnapshot.FromString(player) if player else pb.PlayerSnapshot()
        snapshot.client_id = _text(new_host)
        host = Player.from_snapshot(snapshot)
    return Departure(
        room_id=_text(room),
        client_id=_text(client),
        entity_ids=[_text(e) for e in entities],
        host_changed=bool(int(changed)),
        new_host=host,
    )


class RedisRegistry:
    """The registry every instance on one Redis shares."""

    shared = True

    def __init__(
        self, redis_url: str, *, prefix: str, lease_seconds: float, grace_seconds: float = 0.0
    ) -> None:
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_seconds * 1000))
        # A dead instance's members stay present for the grace after its last
        # heartbeat (PROTOCOL.md section 6): swept once both have passed.
        self.dead_after_ms = max(self.lease_ms, int(grace_seconds * 1000))
        # A connection's hash outlives two missed heartbeats' worth of lease;
        # the sweeper, driven by the instance heartbeat, removes it first.
        self.conn_ttl_ms = 2 * self.dead_after_ms
        self.client = redis_client(redis_url, timeout=REDIS_SOCKET_TIMEOUT)
        self._join = self.client.register_script(JOIN_LUA)
        self._leave = self.client.register_script(LEAVE_LUA)
        self._write = self.client.register_script(WRITE_LUA)
        self._heartbeat = self.client.register_script(HEARTBEAT_LUA)
        self._sweep = self.client.register_script(SWEEP_LUA)
        self._retire = self.client.register_script(RETIRE_LUA)
        self._view = self.client.register_script(VIEW_LUA)
        self._set_muted = self.client.register_script(SET_MUTED_LUA)
        self._entities = self.client.register_script(ENTITIES_LUA)

    async def _run(self, script: Any, *args: Any) -> Any:
        try:
            return await script(args=[self.prefix, *args])
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def join(self, arrival: Arrival, *, resume: bool = False) -> RoomSnapshot:
        """Record the connection; elect it host if the room has none (or move it: resume)."""
        player = arrival.player
        host, players, entities, fresh, moved = await self._run(
            self._join,
            arrival.room_id,
            player.client_id,
            arrival.instance_id,
            self.conn_ttl_ms,
            "resume" if resume else "",
            "user_id",
            player.user_id,
            "display_name",
            player.display_name,
            "client_label",
            arrival.client_label,
            "connected_at",
            arrival.connected_at_ms,
            "player",
            player.snapshot().SerializeToString(),
        )
        return RoomSnapshot(
            host_client_id=_text(host),
            players=[pb.PlayerSnapshot.FromString(p) for p in players],
            entities=[pb.EntitySnapshot.FromString(e) for e in entities],
            instance_was_unknown=bool(fresh),
            moved=bool(moved),
        )

    async def leave(self, room_id: str, instance_id: str, client_id: str) -> Departure | None:
        """Remove the connection and its entities; the host role moves on."""
        row = await self._run(self._leave, room_id, client_id, instance_id)
        return _departure(row) if row else None

    async def write(self, changes: dict[str, RoomChanges]) -> None:
        """Store changed players and entities: one script per room, one round trip."""
        if not changes:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for room_id, change in changes.items():
                    args: list[Any] = [self.prefix, room_id, change.messages, len(change.players)]
                    for p in change.players:
                        args += [p.client_id, p.snapshot().SerializeToString()]
                    args.append(len(change.entities))
                    for e in change.entities:
                        args += [e.owner_id, e.entity_id, e.snapshot().SerializeToString()]
                    for owner, entity_id in change.removed_entities:
                        args += [owner, entity_id]
                    await self._write(args=args, client=pipe)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def occupancy(self, room_id: str) -> int:
        """Members of the room on all instances."""
        try:
            return int(await self.client.zcard(f"{self.prefix}:room:{room_id}:members"))
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def heartbeat(self, instance_id: str) -> Heartbeat:
        """Renew the instance and its connections' leases."""
        added, expired = await self._run(self._heartbeat, instance_id, self.conn_ttl_ms)
        return Heartbeat(bool(added), [_departure(row) for row in expired])

    async def sweep(self) -> list[Departure]:
        """Remove the connections of every instance whose lease expired."""
        return [_departure(row) for row in await self._run(self._sweep, self.dead_after_ms)]

    async def retire(self, instance_id: str, keep: set[tuple[str, str]]) -> list[Departure]:
        """Remove this instance's connections except ``keep`` (all of them: shutdown)."""
        entries = [f"{room} {client}" for room, client in sorted(keep)]
        return [_departure(row) for row in await self._run(self._retire, instance_id, *entries)]

    async def room_ids(self) -> list[str]:
        """The rooms with members on any instance, sorted."""
        try:
            return sorted(_text(r) for r in await self.client.smembers(f"{self.prefix}:rooms"))
        except (RedisError, OSError, TimeoutError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def live_instances(self) -> int:
        """Instances whose heartbeat is younger than the lease (Redis time)."""
        try:
            seconds, micros = await self.client.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            return int(
                await self.client.zcount(f"{self.prefix}:instances", now_ms - self.lease_ms, "+inf")
            )
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def view(self, room_id: str) -> RoomView:
        """The room's connections in join order, its host and entity count."""
        host, rows, entities, messages = await self._run(self._view, room_id)
        connections = [
            Connection(
                client_id=_text(cid),
                instance_id=_text(instance),
                user_id=_text(user),
                display_name=_text(name),
                client_label=_text(label),
                connected_at_ms=int(_text(at) or 0),
                muted=_text(muted) == "1",
            )
            for cid, instance, user, name, label, at, muted in rows
        ]
        return RoomView(room_id, _text(host), connections, int(entities), int(_text(messages)))

    async def set_muted(self, room_id: str, client_id: str, muted: bool) -> bool:
        """Record the mute in the connection's hash; ``False`` if it is not in the room."""
        return bool(await self._run(self._set_muted, room_id, client_id, "1" if muted else "0"))

    async def entities(self, room_id: str) -> list[pb.EntitySnapshot]:
        """Every entity of the room, the server's first, then each member's."""
        return [pb.EntitySnapshot.FromString(e) for e in await self._run(self._entities, room_id)]

    async def ping(self) -> None:
        """Raise :class:`RegistryUnavailable` unless Redis answers."""
        try:
            await self.client.ping()
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
