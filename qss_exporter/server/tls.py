"""The metrics listener's TLS context, re-read when its certificate or key files change.

exporter-toolkit reads the files again on every handshake. An `ssl.SSLContext` serves every
connection of a listening socket and cannot be swapped, but loading a new chain into it takes effect
for the next handshakes: `reload_if_changed` does that when the files' identity (inode, size, mtime)
changed, checked by the agent every second. A file caught half-written fails to load and is tried
again at the next check; the previous certificate stays in use meanwhile.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from typing import Any

from qss_exporter.server.webconfig import TlsSettings

__all__ = ["ServerTls"]

log = logging.getLogger(__name__)


def _identity(path: os.PathLike[str] | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _normal(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


class ServerTls:
    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = settings.min_version
        context.maximum_version = settings.max_version
        if settings.ciphers:
            context.set_ciphers(":".join(settings.ciphers))
        if settings.prefer_server_ciphers:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        context.verify_mode = settings.client_auth
        if settings.client_ca_file is not None:
            context.load_verify_locations(cafile=settings.client_ca_file)
        context.load_cert_chain(settings.cert_file, settings.key_file)
        self.context = context
        self._allowed = frozenset(_normal(san) for san in settings.client_allowed_sans)
        self._files = self._identities()

    def _identities(self) -> tuple[Any, ...]:
        settings = self.settings
        return tuple(_identity(path) for path in (settings.cert_file, settings.key_file, settings.client_ca_file))

    def reload_if_changed(self) -> bool:
        """Load the certificate, key and client CA again if a file changed; True when it did."""
        files = self._identities()
        if files == self._files:
            return False
        settings = self.settings
        try:
            self.context.load_cert_chain(settings.cert_file, settings.key_file)
            if settings.client_ca_file is not None:
                self.context.load_verify_locations(cafile=settings.client_ca_file)
        except (OSError, ssl.SSLError) as error:
            log.warning("metrics listener: could not load the changed certificate files (%s); keeping the old", error)
            return False
        self._files = files
        log.info("metrics listener: certificate files reloaded")
        return True

    def peer_allowed(self, transport: Any) -> bool:
        """client_allowed_sans: the verified client certificate names one of them (any if none given)."""
        if not self._allowed:
            return True
        certificate = transport.get_extra_info("peercert") or {}
        names = {_normal(str(value)) for _kind, value in certificate.get("subjectAltName", ())}
        return not names.isdisjoint(self._allowed)
