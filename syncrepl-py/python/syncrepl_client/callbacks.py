"""Callbacks: what the :class:`~syncrepl_client.Syncrepl` client calls as the directory changes.

Subclass :class:`BaseCallback` and override what you need; a class with class methods or an
instance both work. Attributes are ``dict[str, list[bytes]]``, as python-ldap gives them.
"""

import logging

__all__ = ["BaseCallback", "LoggingCallback"]


class BaseCallback:
    """Every callback, doing nothing.

    A callback that raises stops :meth:`~syncrepl_client.Syncrepl.poll`: the exception
    propagates unchanged, the change it was given is not acknowledged, and the next run
    delivers it again.
    """

    @classmethod
    def bind_complete(cls, ldap):
        """The client connected and bound; ``ldap`` is the :class:`~syncrepl_client.Syncrepl`
        instance (its ``whoami`` attribute holds what Who am I? said, if asked)."""

    @classmethod
    def refresh_done(cls, items):
        """The refresh phase of a refresh-and-persist search ended; ``items`` is a read-only
        mapping of DN to attributes of every entry at that moment."""

    @classmethod
    def record_add(cls, dn, attrs):
        """An entry appeared in the search results."""

    @classmethod
    def record_delete(cls, dn):
        """An entry left the search results (deleted, or no longer matching)."""

    @classmethod
    def record_rename(cls, old_dn, new_dn):
        """An entry's DN changed; if its attributes changed too, :meth:`record_change`
        follows."""

    @classmethod
    def record_change(cls, dn, old_attrs, new_attrs):
        """An entry's attributes changed."""

    @classmethod
    def cookie_change(cls, cookie):
        """The stored cookie changed (the changes it covers were all handled)."""

    @classmethod
    def debug(cls, message):
        """A message from the client, for logs."""


class LoggingCallback(BaseCallback):
    """Logs every callback to the ``syncrepl_client`` logger at INFO level."""

    log = logging.getLogger("syncrepl_client")

    @classmethod
    def bind_complete(cls, ldap):
        cls.log.info("bind complete")

    @classmethod
    def refresh_done(cls, items):
        cls.log.info("refresh done: %d entries", len(items))

    @classmethod
    def record_add(cls, dn, attrs):
        cls.log.info("add %s", dn)

    @classmethod
    def record_delete(cls, dn):
        cls.log.info("delete %s", dn)

    @classmethod
    def record_rename(cls, old_dn, new_dn):
        cls.log.info("rename %s -> %s", old_dn, new_dn)

    @classmethod
    def record_change(cls, dn, old_attrs, new_attrs):
        changed = sorted(
            name
            for name in set(old_attrs) | set(new_attrs)
            if sorted(old_attrs.get(name, [])) != sorted(new_attrs.get(name, []))
        )
        cls.log.info("modify %s: %s", dn, ", ".join(changed))

    @classmethod
    def cookie_change(cls, cookie):
        cls.log.debug("cookie %s", cookie)

    @classmethod
    def debug(cls, message):
        cls.log.debug("%s", message)
