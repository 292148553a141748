"""Refuse every network connection except to this machine, in any Python that puts this folder on
``PYTHONPATH`` (Python imports ``sitecustomize`` at start-up, also in Jupyter kernels it spawns).

The full-mode smoke run uses it to prove that full mode needs no network when its files are on
disk: a download attempt fails at once with ``ConnectionRefusedError`` naming the host, instead of
hanging on a timeout or quietly succeeding on a machine that happens to be online. The runs also
point ``HTTP(S)_PROXY`` at ``127.0.0.1:9``, where nothing listens; that counts as off the machine.
With ``TLH_OFFLINE_GUARD_LOG`` set, every refused attempt is also appended to that file, so a test
can assert that none was made.
"""

import ipaddress
import os
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
_DEAD_PROXY_PORT = 9  # the discard port: the proxy the smoke runs point at


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str) or host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(target: object) -> ConnectionRefusedError:
    log = os.environ.get("TLH_OFFLINE_GUARD_LOG")
    if log:
        with open(log, "a") as file:
            file.write(f"{target!r}\n")
    return ConnectionRefusedError(f"network disabled by tools/offline_guard (tried to reach {target!r})")


def _blocked(address: object) -> bool:
    if not isinstance(address, tuple):
        return False
    return not _is_local(address[0]) or address[1] == _DEAD_PROXY_PORT


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and _blocked(address):
        raise _refuse(address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and _blocked(address):
        raise _refuse(address)
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        _refuse(host)  # logged; a lookup failure is what offline code expects to see
        raise socket.gaierror(socket.EAI_NONAME, f"name lookup disabled by tools/offline_guard ({host!r})")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo
