"""S3 users: access keys and secrets kept (replicated) in the meta service."""

from __future__ import annotations

import asyncio
import secrets
import string

from blobstore.config import ClusterConfig
from blobstore.core.errors import Invalid
from blobstore.core.records import NodeRole
from blobstore.rpc.client import RpcClient, new_session
from blobstore.rpc.meta_client import MetaClient

ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
MAX_NAME_CHARS = 64


def new_keys() -> tuple[str, str]:
    access = "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(20))
    secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))
    return access, secret


def add_user(config: ClusterConfig, name: str) -> tuple[str, str]:
    """Create a user with fresh keys; (access key, secret key)."""
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise Invalid(f"a user name is 1..{MAX_NAME_CHARS} printable characters")
    access, secret = new_keys()

    async def put() -> None:
        session = new_session()
        try:
            meta = MetaClient(RpcClient(session, config.secret),
                              [n.address for n in config.by_role(NodeRole.META)])
            await meta.put_user(access, secret, name)
        finally:
            await session.close()

    asyncio.run(put())
    return access, secret
