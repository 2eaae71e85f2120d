"""etcd's own authorisation on a TLS cluster: who may touch which keys.

With ``--client-cert-auth`` etcd takes a client certificate's common name as the user, so the
users here have no password (etcd 3.4's ``no_password``):

- ``root``, etcd's administrator, which must exist before auth can be enabled;
- ``latitude``, what coordinators connect as, whose one role may read and write the keys under
  the cluster's prefix and nothing else.

Any other name a certificate from the same CA carries (``reader``, an agent's region) is a
user etcd does not know, refused every read and write once auth is on. Every step may be
repeated: ``latitude up`` runs this on every start, and a half-done setup is finished.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from aetcd import rpc

from latitude.channels import open_channel
from latitude.errors import StackError
from latitude.pki import CertFiles
from latitude.stack.etcd import CLIENT_USER, ROOT_USER

ROLE = "latitude"


def key_range(prefix: str) -> tuple[bytes, bytes]:
    """[key, range_end) of every key under ``prefix`` (latitude writes ``<prefix>/<name>``):
    ``/latitude/…`` and not ``/latitude-other``."""
    start = prefix.rstrip("/").encode() + b"/"
    return start, start[:-1] + bytes([start[-1] + 1])


async def enable_auth(
    endpoints: Sequence[str], root: CertFiles, prefix: str, *, timeout: float = 5.0
) -> None:
    """Create the users and the role, grant the role the keys under ``prefix``, enable auth.

    ``root``: a client certificate whose common name is ``root``. Tries each member in turn
    until one answers; a StackError naming the last problem when none does.
    """
    problem = "no etcd endpoints given"
    for endpoint in endpoints:
        try:
            async with open_channel(endpoint, root) as channel:
                await _set_up(rpc.AuthStub(channel), prefix, timeout)
                return
        except grpc.aio.AioRpcError as err:
            if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise StackError(
                    f"etcd at {endpoint} refused to set up auth: {err.details()}"
                ) from err
            problem = f"{endpoint}: {err.details()}"
    raise StackError(f"could not set up etcd auth: no member answered ({problem})")


async def _set_up(auth: rpc.AuthStub, prefix: str, timeout: float) -> None:
    start, end = key_range(prefix)
    for user in (ROOT_USER, CLIENT_USER):
        options = rpc.UserAddOptions(no_password=True)
        await _exists_ok(
            auth.UserAdd(rpc.AuthUserAddRequest(name=user, options=options), timeout=timeout)
        )
    for role in (ROOT_USER, ROLE):
        await _exists_ok(auth.RoleAdd(rpc.AuthRoleAddRequest(name=role), timeout=timeout))
    # etcd enables auth only once the root user holds the root role.
    grants = ((ROOT_USER, ROOT_USER), (CLIENT_USER, ROLE))
    permission = rpc.Permission(permType=rpc.Permission.READWRITE, key=start, range_end=end)
    request = rpc.AuthRoleGrantPermissionRequest(name=ROLE, perm=permission)
    await auth.RoleGrantPermission(request, timeout=timeout)
    for user, role in grants:
        await auth.UserGrantRole(
            rpc.AuthUserGrantRoleRequest(user=user, role=role), timeout=timeout
        )
    await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=timeout)


async def _exists_ok(call) -> None:
    """Await an add; one that exists already is what a repeated setup finds."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.FAILED_PRECONDITION or "already exists" not in (
            err.details() or ""
        ):
            raise
