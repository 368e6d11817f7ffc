"""Seeded hostile frames for fuzz tests over live sockets.

Each frame is one of: a valid client message, a mutated one (bytes flipped,
inserted, dropped, appended), a proto3 JSON text with characters replaced,
random bytes, or a valid message carrying control characters in its text
fields. The same seed gives the same frames, so a failure can be replayed.
"""

from __future__ import annotations

import random

from google.protobuf import json_format

from presence.protocol import pb

_HOSTILE_TEXT = ["\x00", "\x1b[31m", "\ud7ff", "\u202e", "\x7f", "\n", "🚀", "\u200d"]
_JSON_NOISE = '{}[]":,0123456789aeE-+.\\u\x00 nulltrue'
# Escapes put right after a quote: lone surrogates (no UTF-8 exists for them)
# in field names, map keys, strings and base64 bytes.
_JSON_ESCAPES = ["\\ud800", "\\udfff", "\\udc00x", "\\u0000"]


def valid_messages() -> list[pb.Message]:
    """One valid client message of every kind a client may send."""
    return [
        pb.Message(position_update=pb.PositionUpdate(position=pb.Vector3(x=1, y=2, z=3))),
        pb.Message(message_id="m1", chat_message=pb.ChatMessage(message="hello")),
        pb.Message(
            message_id="s1",
            entity_spawn=pb.EntitySpawn(entity_id="e1", template_id="t", components={"a": "b"}),
        ),
        pb.Message(entity_update=pb.EntityUpdate(entity_id="e1", components={"a": b"\xff"})),
        pb.Message(position_update=pb.PositionUpdate(entity_id="e1")),
        pb.Message(entity_despawn=pb.EntityDespawn(entity_id="e1")),
        pb.Message(client_hello=pb.ClientHello(display_name="x", capabilities=["batch", "ack"])),
        pb.Message(
            presence_event=pb.PresenceEvent(
                event_type=pb.UPDATE, data=pb.PresenceData(display_name="y")
            )
        ),
        pb.Message(ping=pb.Ping(client_time_ms=5)),
        pb.Message(pong=pb.Pong(client_time_ms=5)),
        pb.Message(ack=pb.Ack(up_to_seq=3)),
        pb.Message(kick_player=pb.KickPlayer(target_client_id="nobody")),
        pb.Message(mute_player=pb.MutePlayer(target_client_id="nobody", muted=True)),
        pb.Message(lock_room=pb.LockRoom(locked=False)),
        pb.Message(voice_data=pb.VoiceData(audio_data=b"123")),
    ]


class FrameFuzzer:
    """Frames from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.valid = valid_messages()

    def _mutated(self, data: bytes) -> bytes:
        rng = self.rng
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 and out:
                out[rng.randrange(len(out))] = rng.randrange(256)
            elif op == 1:
                out.insert(rng.randint(0, len(out)), rng.randrange(256))
            elif op == 2 and out:
                del out[rng.randrange(len(out))]
            else:
                out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        return bytes(out)

    def _noisy_json(self, message: pb.Message) -> str:
        chars = list(json_format.MessageToJson(message))
        if self.rng.random() < 0.5:
            quotes = [i for i, c in enumerate(chars) if c == '"']
            for _ in range(self.rng.randint(1, 2)):
                at = self.rng.choice(quotes)
                chars[at] += self.rng.choice(_JSON_ESCAPES)
            return "".join(chars)
        for _ in range(self.rng.randint(1, 3)):
            chars[self.rng.randrange(len(chars))] = self.rng.choice(_JSON_NOISE)
        return "".join(chars)

    def _hostile_text(self) -> pb.Message:
        text = "".join(self.rng.choice(["a", " ", *_HOSTILE_TEXT]) for _ in range(8))
        return self.rng.choice(
            [
                pb.Message(message_id="h", chat_message=pb.ChatMessage(message=text)),
                pb.Message(client_hello=pb.ClientHello(display_name=text)),
                pb.Message(
                    entity_spawn=pb.EntitySpawn(entity_id=text, template_id="t", components={})
                ),
                pb.Message(kick_player=pb.KickPlayer(target_client_id="x", reason=text)),
            ]
        )

    def frame(self) -> bytes | str:
        """The next frame: binary or text."""
        rng = self.rng
        message = rng.choice(self.valid)
        roll = rng.random()
        if roll < 0.40:
            return self._mutated(message.SerializeToString())
        if roll < 0.55:
            return self._noisy_json(message)
        if roll < 0.65:
            return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        if roll < 0.80:
            hostile = self._hostile_text()
            if rng.random() < 0.5:
                return hostile.SerializeToString()
            return json_format.MessageToJson(hostile)
        if roll < 0.92:
            return message.SerializeToString()
        return json_format.MessageToJson(message)
