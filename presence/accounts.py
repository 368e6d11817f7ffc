"""Whether an open socket's account still allows it: disabled, deleted, password changed.

A token proves who connected when it was issued; the account may change
while the socket stays open. :func:`revocation` decides (pure), from the
identity the socket joined with and the account as the database holds it
now (:func:`account_states`, one query for many users). When a user is saved
or deleted, :func:`announce_account_change` tells every instance at once
(presence/cluster/account_watch.py listens); every instance also re-reads
its own members' accounts every ``ACCOUNT_CHECK_SECONDS``, for changes made
where no signal fires (raw SQL, another database client).

Like Django's sessions after a password change, tokens issued before one
stop working: simplejwt's ``CHECK_REVOKE_TOKEN`` puts a digest of the
password hash in each token (graphwiz/settings.py); presence/auth.py checks
it at the door and records it as ``Identity.password_stamp``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from rest_framework_simplejwt.utils import get_md5_hash_password

from presence.auth import ACCOUNT_DISABLED, PASSWORD_CHANGED, Identity

logger = logging.getLogger(__name__)

ACCOUNT_DELETED = "account deleted"

ACCOUNTS_GROUP = "presence.accounts"  # every instance's account watch listens here
ACCOUNT_EVENT = "presence.account"
# Users read per query: well under SQLite's bound on query parameters.
QUERY_CHUNK = 500
# Saving only these fields cannot change what a socket may do (a login's last_login).
_HARMLESS_FIELDS = frozenset({"last_login"})


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the database says about a user now."""

    active: bool
    password_stamp: str  # simplejwt's digest of the password hash


def password_stamp(password_hash: str) -> str:
    """The digest simplejwt puts in a token for a user with ``password_hash``."""
    return str(get_md5_hash_password(password_hash))


def revocation(identity: Identity, state: AccountState | None) -> str | None:
    """Why a socket of ``identity`` must close now (the text for its Error), or None.

    ``state`` is None when the user no longer exists. Development-mode
    identities have no account and are never revoked.
    """
    if identity.django_user_id is None:
        return None
    if state is None:
        return ACCOUNT_DELETED
    if not state.active:
        return ACCOUNT_DISABLED
    if identity.password_stamp and state.password_stamp != identity.password_stamp:
        return PASSWORD_CHANGED
    return None


def account_states(user_ids: Iterable[int]) -> dict[int, AccountState]:
    """The current state of each existing user among ``user_ids`` (sync: a database read)."""
    model = get_user_model()
    has_active = any(f.name == "is_active" for f in model._meta.get_fields())
    columns = ["pk", "password", *(["is_active"] if has_active else [])]
    ids = sorted(set(user_ids))
    states: dict[int, AccountState] = {}
    for start in range(0, len(ids), QUERY_CHUNK):
        rows = model.objects.filter(pk__in=ids[start : start + QUERY_CHUNK]).values_list(*columns)
        for pk, password, *active in rows:
            states[pk] = AccountState(bool(active[0]) if active else True, password_stamp(password))
    return states


def announce_account_change(user_pk: int) -> None:
    """Tell every instance that ``user_pk`` changed, through the channel layer (sync).

    Each instance then re-reads that user's account for its own members. A
    failure is logged, not raised: it must not fail the save, and the
    periodic check finds the change within ``ACCOUNT_CHECK_SECONDS``.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(ACCOUNTS_GROUP, {"type": ACCOUNT_EVENT, "user": user_pk})
    except Exception:
        logger.warning("could not announce an account change; the periodic check will close")


def _user_saved(
    sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any
) -> None:
    if created or kwargs.get("raw"):
        return
    if update_fields is not None and set(update_fields) <= _HARMLESS_FIELDS:
        return
    transaction.on_commit(partial(announce_account_change, instance.pk), using=kwargs.get("using"))


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    transaction.on_commit(partial(announce_account_change, instance.pk), using=kwargs.get("using"))


def connect_signals() -> None:
    """Announce every save and deletion of a user (from the app's ``ready()``)."""
    model = get_user_model()
    post_save.connect(_user_saved, sender=model, dispatch_uid="presence.accounts.saved")
    post_delete.connect(_user_deleted, sender=model, dispatch_uid="presence.accounts.deleted")
