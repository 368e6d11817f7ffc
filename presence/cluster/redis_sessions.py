"""Sessions in Redis (``REDIS_URL``): a client resumes on any instance.

Keys, under ``P = REDIS_CHANNEL_PREFIX`` (beside the registry's, same prefix):

* ``P:session:{sid}`` -- hash: user, room, client, instance, conn (the holding
  connection), caps (capabilities, comma-separated), first, last (the seq
  range of the kept messages)
* ``P:session:{sid}:kept`` -- list: the server message ids of seq first..last
  (at most ``MESSAGE_QUEUE_SIZE``)
* ``P:session:{sid}:answers`` -- hash: client message id -> the answer given
  (an encoded ``Ack`` or ``Error``); ``P:session:{sid}:asked`` -- list: those
  ids, oldest first (at most ``MESSAGE_QUEUE_SIZE``)
* ``P:room:{room}:log`` -- sorted set: server message id -> its number in the
  room log; ``P:room:{room}:bodies`` -- hash: server message id -> "sender
  (excluded) newline encoded message"; ``P:room:{room}:logseq`` -- the last
  number given. Each reliable message of the room once, however many sessions
  keep it, written by the instance it came from before it is published; the
  last ``2 * MESSAGE_QUEUE_SIZE`` are kept.
* ``P:session:{sid}`` also holds ``logpos`` (the room log number the session
  started at, or was caught up to) and ``hwm:{instance}`` (the highest message
  counter of that instance the session recorded): what a claim needs to tell
  which logged messages its holder never numbered.

TTLs: a held session's keys live ``PRESENCE_RESUME_WINDOW_SECONDS`` plus the
dead-instance delay and are renewed by its instance's heartbeat; a detached
session's keys expire ``PRESENCE_RESUME_WINDOW_SECONDS`` after the detach; a
room's log lives as long as a session of the room is held or the room
writes. So nothing outlives the resume window by more than the dead-instance
delay.

Every check-and-write is one Lua script: a journal write is accepted only
from the connection that holds the session, so a claim by a resume on any
instance stops the old holder at once.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from redis.exceptions import RedisError

from presence.cluster.registry import RegistryUnavailable
from presence.cluster.sessions import (
    Claimed,
    JournalEntry,
    LogEntry,
    Refused,
    SessionRecord,
)
from presence.protocol.codec import EncodedMessage, leading_message_id
from presence.protocol.delivery import AnswerCache, DeliveryWindow
from presence.redis_client import redis_client

logger = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT = 2.0
UNCHANGED = "\x00"  # capabilities not changed by this journal entry

# ARGV: prefix, sid, user, room, client, instance, conn, caps, ttl ms. The
# session starts at the room log's end: what was logged before is not its.
OPEN_LUA = """
local p, sid, room = ARGV[1], ARGV[2], ARGV[4]
local rec = p .. ':session:' .. sid
redis.call('DEL', rec, rec .. ':kept', rec .. ':answers', rec .. ':asked')
local logpos = redis.call('GET', p .. ':room:' .. room .. ':logseq') or 0
redis.call('HSET', rec, 'user', ARGV[3], 'room', room, 'client', ARGV[5],
  'instance', ARGV[6], 'conn', ARGV[7], 'caps', ARGV[8], 'first', 1, 'last', 0,
  'logpos', logpos)
redis.call('PEXPIRE', rec, ARGV[9])
return 1
"""

_ORIGIN = """
-- A server message id is "{instance}-{counter}", the counter growing per instance.
local function origin(id)
  local o, n = string.match(id, '^(.*)-(%d+)$')
  return o or id, tonumber(n) or 0
end
"""

# ARGV: prefix, cap, log cap, ttl ms, room count, then per room: room, log
# count, (id, exclude, body)*, session count, then per session: sid, conn,
# caps (or UNCHANGED), message count, (seq, id)*, answer count, (id, answer)*.
# Returns the sessions whose holder is no longer the entry's connection.
JOURNAL_LUA = (
    _ORIGIN
    + """
local p, cap, logcap, ttl_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local rejected = {}
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local room = ARGV[i]; i = i + 1
  local base = p .. ':room:' .. room
  local log, bodies, logseq = base .. ':log', base .. ':bodies', base .. ':logseq'
  local nlog = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nlog do
    if redis.call('HSETNX', bodies, ARGV[i], ARGV[i + 1] .. '\\n' .. ARGV[i + 2]) == 1 then
      redis.call('ZADD', log, redis.call('INCR', logseq), ARGV[i])
    end
    i = i + 3
  end
  if nlog > 0 then
    local over = redis.call('ZCARD', log) - logcap
    if over > 0 then
      for _, id in ipairs(redis.call('ZRANGE', log, 0, over - 1)) do
        redis.call('HDEL', bodies, id)
      end
      redis.call('ZREMRANGEBYRANK', log, 0, over - 1)
    end
    for _, key in ipairs({log, bodies, logseq}) do redis.call('PEXPIRE', key, ttl_ms) end
  end
  local nsessions = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nsessions do
    local sid, conn, caps = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local rec = p .. ':session:' .. sid
    local ok = redis.call('HGET', rec, 'conn') == conn
    local ttl = redis.call('PTTL', rec)
    local nmsg = tonumber(ARGV[i + 3]); i = i + 4
    if ok and caps ~= '\\0' then redis.call('HSET', rec, 'caps', caps) end
    if ok and nmsg > 0 then
      local kept = rec .. ':kept'
      local last = tonumber(redis.call('HGET', rec, 'last'))
      for k = 0, nmsg - 1 do
        if tonumber(ARGV[i + 2 * k]) ~= last + k + 1 then ok = false end
      end
      if ok then
        for k = 0, nmsg - 1 do
          local id = ARGV[i + 2 * k + 1]
          redis.call('RPUSH', kept, id)
          local o, n = origin(id)
          local field = 'hwm:' .. o
          if n > (tonumber(redis.call('HGET', rec, field)) or 0) then
            redis.call('HSET', rec, field, n)
          end
        end
        last = last + nmsg
        if redis.call('LLEN', kept) > cap then redis.call('LTRIM', kept, -cap, -1) end
        redis.call('HSET', rec, 'last', last, 'first', last - redis.call('LLEN', kept) + 1)
        if ttl > 0 then redis.call('PEXPIRE', kept, ttl) end
      end
    end
    i = i + 2 * nmsg
    local nans = tonumber(ARGV[i]); i = i + 1
    if ok and nans > 0 then
      local answers, asked = rec .. ':answers', rec .. ':asked'
      for k = 0, nans - 1 do
        if redis.call('HSET', answers, ARGV[i + 2 * k], ARGV[i + 2 * k + 1]) == 1 then
          redis.call('RPUSH', asked, ARGV[i + 2 * k])
        end
      end
      while redis.call('LLEN', asked) > cap do
        redis.call('HDEL', answers, redis.call('LPOP', asked))
      end
      if ttl > 0 then
        redis.call('PEXPIRE', answers, ttl)
        redis.call('PEXPIRE', asked, ttl)
      end
    end
    i = i + 2 * nans
    if not ok then table.insert(rejected, sid) end
  end
end
return rejected
"""
)

# ARGV: prefix, sid, user, room, last_seq, instance, conn, ttl ms, cap, catch up.
# {'unknown'} | {'ended', reason, client, instance, conn, caps, room}
# | {'ok', client, instance, conn, caps, last, bodies, answer pairs}
#
# Catch-up: what the room logged after the session's position that its holder
# never recorded (per origin instance, messages reach a session in counter
# order, so "recorded" is "counter <= the highest recorded of that origin"),
# the session's own messages aside, is numbered now, after what was kept. If
# the log was trimmed past the position and its oldest entry was not recorded,
# older unrecorded ones may be gone: a gap.
CLAIM_LUA = (
    _ORIGIN
    + """
local p, sid, user, room, lastseq = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local cap = tonumber(ARGV[9])
local rec = p .. ':session:' .. sid
local f = redis.call('HMGET', rec, 'user', 'room', 'client', 'instance', 'conn', 'caps',
  'first', 'last', 'logpos')
if not f[1] or f[1] ~= user then return {'unknown'} end
local first, last, logpos = tonumber(f[7]), tonumber(f[8]), tonumber(f[9]) or 0
local client = f[3]
local base = p .. ':room:' .. room
local log, store = base .. ':log', base .. ':bodies'
local reason = ''
if f[2] ~= room then reason = 'other_room'
elseif lastseq > last then reason = 'ahead' end
local caught = {}
if reason == '' and ARGV[10] == '1' then
  local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  local trimmed = oldest[2] and tonumber(oldest[2]) > logpos + 1
  local entries = redis.call('ZRANGEBYSCORE', log, '(' .. logpos, '+inf', 'WITHSCORES')
  for k = 1, #entries, 2 do
    local id = entries[k]
    local o, n = origin(id)
    local value = redis.call('HGET', store, id) or '\\n'
    local exclude = string.sub(value, 1, string.find(value, '\\n', 1, true) - 1)
    local hwm = tonumber(redis.call('HGET', rec, 'hwm:' .. o)) or 0
    local unrecorded = exclude ~= client and n > hwm
    if k == 1 and trimmed and unrecorded then reason = 'gap'; break end
    if unrecorded then table.insert(caught, id) end
    logpos = tonumber(entries[k + 1])
  end
end
if reason == '' and #caught > 0 then
  local kept = rec .. ':kept'
  for _, id in ipairs(caught) do
    redis.call('RPUSH', kept, id)
    local o, n = origin(id)
    if n > (tonumber(redis.call('HGET', rec, 'hwm:' .. o)) or 0) then
      redis.call('HSET', rec, 'hwm:' .. o, n)
    end
  end
  last = last + #caught
  if redis.call('LLEN', kept) > cap then redis.call('LTRIM', kept, -cap, -1) end
  first = last - redis.call('LLEN', kept) + 1
  redis.call('HSET', rec, 'last', last, 'first', first, 'logpos', logpos)
end
if reason == '' and lastseq + 1 < first then reason = 'gap' end
local bodies = {}
if reason == '' then
  for _, id in ipairs(redis.call('LRANGE', rec .. ':kept', lastseq + 1 - first, -1)) do
    local value = redis.call('HGET', store, id)
    if not value then reason = 'gap'; break end
    table.insert(bodies, string.sub(value, string.find(value, '\\n', 1, true) + 1))
  end
end
if reason ~= '' then
  redis.call('DEL', rec, rec .. ':kept', rec .. ':answers', rec .. ':asked')
  return {'ended', reason, f[3], f[4], f[5], f[6] or '', f[2]}
end
redis.call('HSET', rec, 'instance', ARGV[6], 'conn', ARGV[7])
for _, key in ipairs({rec, rec .. ':kept', rec .. ':answers', rec .. ':asked'}) do
  redis.call('PEXPIRE', key, ARGV[8])
end
local answers = {}
for _, id in ipairs(redis.call('LRANGE', rec .. ':asked', 0, -1)) do
  local answer = redis.call('HGET', rec .. ':answers', id)
  if answer then table.insert(answers, id); table.insert(answers, answer) end
end
return {'ok', f[3], f[4], f[5], f[6] or '', last, bodies, answers}
"""
)

# ARGV: prefix, room, after, up to. Returns {log end, ids logged in (after, up to]}.
READ_LOG_LUA = """
local base = ARGV[1] .. ':room:' .. ARGV[2]
local log_end = tonumber(redis.call('GET', base .. ':logseq') or '0')
local ids = {}
if tonumber(ARGV[3]) >= 0 and tonumber(ARGV[4]) > tonumber(ARGV[3]) then
  ids = redis.call('ZRANGEBYSCORE', base .. ':log', '(' .. ARGV[3], ARGV[4])
end
return {log_end, ids}
"""

# ARGV: prefix, sid, conn, ttl ms, "end" or "detach": only the holder may.
SETTLE_LUA = """
local rec = ARGV[1] .. ':session:' .. ARGV[2]
if redis.call('HGET', rec, 'conn') ~= ARGV[3] then return 0 end
local keys = {rec, rec .. ':kept', rec .. ':answers', rec .. ':asked'}
for _, key in ipairs(keys) do
  if ARGV[5] == 'end' then redis.call('DEL', key) else redis.call('PEXPIRE', key, ARGV[4]) end
end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _caps(value: Any) -> tuple[str, ...]:
    text = _text(value)
    return tuple(text.split(",")) if text else ()


class RedisSessions:
    """Sessions every instance on one Redis can resume."""

    shared = True

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str,
        queue_size: int,
        window_seconds: float,
        held_extra_seconds: float,
    ) -> None:
        self.prefix = prefix
        self.queue_size = queue_size
        self.window_ms = max(1, int(window_seconds * 1000))
        # A held session outlives a silent (dead) instance by the window.
        self.held_ttl_ms = self.window_ms + max(1, int(held_extra_seconds * 1000))
        self.client = redis_client(redis_url, timeout=REDIS_SOCKET_TIMEOUT)
        self._open = self.client.register_script(OPEN_LUA)
        self._journal = self.client.register_script(JOURNAL_LUA)
        self._claim = self.client.register_script(CLAIM_LUA)
        self._settle = self.client.register_script(SETTLE_LUA)
        self._read_log = self.client.register_script(READ_LOG_LUA)

    async def _run(self, script: Any, *args: Any) -> Any:
        try:
            return await script(args=[self.prefix, *args])
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def open(
        self,
        record: SessionRecord,
        window: DeliveryWindow[EncodedMessage],
        answers: AnswerCache[bytes],
    ) -> None:
        """Record a new session held by ``record.connection_id``."""
        await self._run(
            self._open,
            record.session_id,
            record.user_id,
            record.room_id,
            record.client_id,
            record.instance_id,
            record.connection_id,
            ",".join(record.capabilities),
            self.held_ttl_ms,
        )

    async def claim(
        self,
        session_id: str,
        *,
        user_id: str,
        room_id: str,
        last_seq: int,
        instance_id: str,
        connection_id: str,
        catch_up: bool = True,
    ) -> Claimed | Refused:
        """Claim the session for ``connection_id`` with its replay after ``last_seq``."""
        row = await self._run(
            self._claim,
            session_id,
            user_id,
            room_id,
            last_seq,
            instance_id,
            connection_id,
            self.held_ttl_ms,
            self.queue_size,
            "1" if catch_up else "0",
        )
        status = _text(row[0])
        if status == "unknown":
            return Refused("unknown")
        if status == "ended":
            _, reason, client, instance, conn, caps, room = row
            previous = SessionRecord(
                session_id,
                user_id,
                _text(room),
                _text(client),
                _text(instance),
                _text(conn),
                _caps(caps),
            )
            return Refused(_text(reason), ended=previous)
        _, client, instance, conn, caps, last, bodies, answers = row
        previous = SessionRecord(
            session_id, user_id, room_id, _text(client), _text(instance), _text(conn), _caps(caps)
        )
        replay = [
            (last_seq + 1 + index, EncodedMessage(bytes(body))) for index, body in enumerate(bodies)
        ]
        pairs = [(_text(answers[k]), bytes(answers[k + 1])) for k in range(0, len(answers), 2)]
        return Claimed(record=previous, last_seq=int(last), replay=replay, answers=pairs)

    async def journal(
        self, rooms: dict[str, dict[str, JournalEntry]], logs: dict[str, list[LogEntry]]
    ) -> set[str]:
        """Write the room logs, then every session's numbering and answers: one script."""
        if not rooms and not logs:
            return set()
        names = list(logs) + [room for room in rooms if room not in logs]
        args: list[Any] = [self.queue_size, 2 * self.queue_size, self.held_ttl_ms, len(names)]
        for room_id in names:
            logged = logs.get(room_id, [])
            args += [room_id, len(logged)]
            for entry in logged:
                args += [entry.message_id, entry.exclude, entry.body]
            entries = rooms.get(room_id, {})
            args.append(len(entries))
            for session_id, session in entries.items():
                caps = UNCHANGED if session.capabilities is None else ",".join(session.capabilities)
                args += [session_id, session.connection_id, caps, len(session.messages)]
                for seq, encoded in session.messages:
                    args += [seq, leading_message_id(encoded.proto)]
                args.append(len(session.answers))
                for message_id, answer in session.answers:
                    args += [message_id, answer]
        rejected = await self._run(self._journal, *args)
        return {_text(sid) for sid in rejected}

    async def detach(self, session_id: str, connection_id: str) -> None:
        """Expire the session one resume window from now (if this connection holds it)."""
        await self._run(self._settle, session_id, connection_id, self.window_ms, "detach")

    async def end(self, session_id: str, connection_id: str) -> None:
        """Delete the session (if this connection holds it)."""
        await self._run(self._settle, session_id, connection_id, self.window_ms, "end")

    async def renew(self, session_ids: list[str]) -> None:
        """Keep held sessions (the instance heartbeat): one pipeline."""
        if not session_ids:
            return
        base = f"{self.prefix}:session:"
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for sid in session_ids:
                    for suffix in ("", ":kept", ":answers", ":asked"):
                        pipe.pexpire(base + sid + suffix, self.held_ttl_ms)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def renew_rooms(self, room_ids: list[str]) -> None:
        """Keep the logs of rooms with held sessions."""
        if not room_ids:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for room_id in room_ids:
                    for suffix in (":log", ":bodies", ":logseq"):
                        pipe.pexpire(f"{self.prefix}:room:{room_id}{suffix}", self.held_ttl_ms)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc

    async def read_logs(
        self, ranges: dict[str, tuple[int, int]]
    ) -> dict[str, tuple[int, list[str]]]:
        """Per room, the log's end and the ids logged in (after, up to]: one round trip."""
        if not ranges:
            return {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for room_id, (after, upto) in ranges.items():
                    await self._read_log(args=[self.prefix, room_id, after, upto], client=pipe)
                rows = await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc
        return {
            room_id: (int(log_end), [_text(i) for i in ids])
            for room_id, (log_end, ids) in zip(ranges, rows, strict=True)
        }

    async def logged(self, room_id: str, ids: list[str]) -> list[LogEntry]:
        """The room log's entries of ``ids`` that it still holds, in the order asked."""
        try:
            values = await self.client.hmget(f"{self.prefix}:room:{room_id}:bodies", ids)
        except (TimeoutError, RedisError, OSError) as exc:
            raise RegistryUnavailable(repr(exc)) from exc
        entries = []
        for message_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            exclude, _, body = cast(bytes, value).partition(b"\n")  # responses are not decoded
            entries.append(LogEntry(message_id, exclude.decode(), body))
        return entries

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
