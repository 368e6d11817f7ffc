"""GraphWiz presence: rooms, avatars and entities shared over WebSockets."""
