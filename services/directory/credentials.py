"""Credentials the directory holds: each provider organisation's named API keys, and the ops users
of every service. Ops manage both here (issue, list, rotate, expire, revoke; a key is shown once);
notify and the other services ask the internal endpoints who holds a key. The lifecycle and its audit
records are ``shared.credentials``'.

The very first ops user cannot be made through an API that needs an ops user: ``bootstrap_ops_user``
writes it straight to the database (``pathways ops-users bootstrap``), and only while no ops user can
sign in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory.store import OpsUser, Organisation, ProviderKey
from shared.audit import record_read
from shared.auth import Caller, CallerKind, NotifyCaller, OpsCaller, hash_api_key, service_from
from shared.credentials import (
    CredentialPublic,
    EndAction,
    ExpireRequest,
    RotateRequest,
    ShownOnce,
    Validity,
    change,
    find,
    issue,
    new_key,
)
from shared.db import Database
from shared.events import DirectoryChanged, utcnow
from shared.ops_users import AUTHENTICATE_PATH, OpsIdentity, OpsKey
from shared.openapi import errors
from shared.outbox import enqueue
from shared.service import RuntimeDep, SessionDep

ops = APIRouter(tags=["ops"])
internal = APIRouter(tags=["internal"])

PROVIDER_KEY_PREFIX = "pw_prv"
OPS_KEY_PREFIX = "pw_ops"
Handle = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,98}[a-z0-9]$")]
BOOTSTRAP = Caller(CallerKind.ops, "bootstrap")
OpsRole = Literal["ops", "commissioner"]
# The services with ops routes of their own, which ask the directory who holds an ops key.
OpsCheckers = Annotated[Caller, Depends(service_from("intake", "router", "notify"))]


class ProviderKeyCreate(Validity):
    name: Handle = Field(description="What the key is for, e.g. 'case-system' or 'inbox-2026'")


class ProviderKeyPublic(CredentialPublic):
    organisation_id: str

    @classmethod
    def of(cls, key: ProviderKey) -> ProviderKeyPublic:
        return cls(organisation_id=key.organisation_id, **cls.fields_of(key))


class ProviderKeyIssued(ProviderKeyPublic, ShownOnce):
    pass


class OpsUserCreate(Validity):
    id: Handle = Field(description="The person's handle, e.g. 'alex.khan': it names them in the audit trail")
    name: str = Field(default="", max_length=200, description="Full name or role (defaults to the handle)")
    role: OpsRole = Field(default="ops", description="'ops', or 'commissioner': reports only, never a case")


class OpsUserPublic(CredentialPublic):
    id: str
    role: OpsRole = "ops"

    @classmethod
    def of(cls, user: OpsUser) -> OpsUserPublic:
        return cls(id=user.id, role=user.role, **cls.fields_of(user))


class OpsUserIssued(OpsUserPublic, ShownOnce):
    pass


class ProviderKeyQuery(BaseModel):
    api_key: str


class ProviderIdentity(BaseModel):
    organisation_id: str
    name: str
    key_name: str
    expires_at: datetime


# --- Provider keys ----------------------------------------------------------------------------------


def _keys_changed(session: AsyncSession, organisation_id: str, change_kind: str) -> None:
    # notify caches keys for a minute: this tells it to forget them now.
    enqueue(session, DirectoryChanged(entity="provider-key", entity_id=organisation_id, change=change_kind))  # type: ignore[arg-type]


async def _provider_key(session: AsyncSession, organisation_id: str, name: str) -> ProviderKey:
    key = (await session.exec(select(ProviderKey).where(
        ProviderKey.organisation_id == organisation_id, ProviderKey.name == name))).first()
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Organisation '{organisation_id}' has no key '{name}'.")
    return key


async def add_provider_key(session: AsyncSession, caller: Caller, organisation_id: str, body: ProviderKeyCreate,
                           *, api_key: str | None = None) -> ProviderKeyIssued:
    """A new named key for an organisation (or ``api_key``, for the sample data only)."""
    if await session.get(Organisation, organisation_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No organisation with id '{organisation_id}'.")
    existing = (await session.exec(select(ProviderKey.id).where(
        ProviderKey.organisation_id == organisation_id, ProviderKey.name == body.name))).first()
    if existing is not None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"Organisation '{organisation_id}' already has a key '{body.name}'.")
    plain = api_key or new_key(PROVIDER_KEY_PREFIX).api_key
    key = ProviderKey(organisation_id=organisation_id, name=body.name, key_hash=hash_api_key(plain),
                      expires_at=body.expires_at(utcnow()))
    issue(session, caller, key, kind="provider-key", subject=f"organisation {organisation_id} key '{body.name}'")
    _keys_changed(session, organisation_id, "created")
    await session.flush()
    return ProviderKeyIssued(api_key=plain, **ProviderKeyPublic.of(key).model_dump())


@ops.post("/organisations/{organisation_id}/keys", response_model=ProviderKeyIssued, status_code=201,
          summary="Issue a named API key for a provider (shown once); an organisation may hold several",
          responses=errors(404, 409))
async def create_provider_key(organisation_id: str, body: ProviderKeyCreate, runtime: RuntimeDep,
                              session: SessionDep,
                              caller: OpsCaller) -> ProviderKeyIssued:
    async with runtime.db.transaction(session):
        return await add_provider_key(session, caller, organisation_id, body)


@ops.get("/organisations/{organisation_id}/keys", response_model=list[ProviderKeyPublic],
         summary="A provider's keys, with their state and expiry (never the keys)", responses=errors(404))
async def list_provider_keys(organisation_id: str, runtime: RuntimeDep,
                             session: SessionDep, caller: OpsCaller) -> list[ProviderKeyPublic]:
    if await session.get(Organisation, organisation_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No organisation with id '{organisation_id}'.")
    keys = [ProviderKeyPublic.of(k) for k in (await session.exec(
        select(ProviderKey).where(ProviderKey.organisation_id == organisation_id).order_by(col(ProviderKey.name))
    )).all()]
    await record_read(runtime.db, session, caller, "list-provider-keys", detail=f"organisation {organisation_id}")
    return keys


@ops.post("/organisations/{organisation_id}/keys/{name}/rotate", response_model=ProviderKeyIssued,
          summary="A new secret (shown once) and expiry for a named key; the old secret stops working",
          responses=errors(404, 409))
async def rotate_provider_key(organisation_id: str, name: str, runtime: RuntimeDep,
                              session: SessionDep, caller: OpsCaller,
                              body: RotateRequest | None = None) -> ProviderKeyIssued:
    async with runtime.db.transaction(session):
        key = await _provider_key(session, organisation_id, name)
        plain = await change(session, caller, key, "rotate", kind="provider-key", prefix=PROVIDER_KEY_PREFIX,
                             subject=f"organisation {organisation_id} key '{name}'", rotation=body)
        _keys_changed(session, organisation_id, "updated")
    assert plain is not None
    return ProviderKeyIssued(api_key=plain, **ProviderKeyPublic.of(key).model_dump())


@ops.post("/organisations/{organisation_id}/keys/{name}/{action}", response_model=ProviderKeyPublic,
          summary="Expire (`expire`, optionally at a given time) or revoke (`revoke`) a provider's key",
          responses=errors(404, 409))
async def end_provider_key(organisation_id: str, name: str, action: EndAction, runtime: RuntimeDep,
                           session: SessionDep,
                           caller: OpsCaller, body: ExpireRequest | None = None) -> ProviderKeyPublic:
    async with runtime.db.transaction(session):
        key = await _provider_key(session, organisation_id, name)
        await change(session, caller, key, action, kind="provider-key", prefix=PROVIDER_KEY_PREFIX,
                     subject=f"organisation {organisation_id} key '{name}'", expiry=body)
        _keys_changed(session, organisation_id, "updated")
    return ProviderKeyPublic.of(key)


@internal.post("/internal/providers/authenticate", response_model=ProviderIdentity,
               summary="Which provider holds this API key, while it is usable (for notify)", responses=errors(404))
async def authenticate_provider(body: ProviderKeyQuery, session: SessionDep, _caller: NotifyCaller
                                ) -> ProviderIdentity:
    row = (await session.exec(select(ProviderKey, Organisation).join(Organisation)
                              .where(ProviderKey.key_hash == hash_api_key(body.api_key)))).first()
    if row is None or not row[0].usable():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No provider holds a usable key like that.")
    key, organisation = row
    return ProviderIdentity(organisation_id=organisation.id, name=organisation.name, key_name=key.name,
                            expires_at=key.expires_at)


# --- Ops users --------------------------------------------------------------------------------------


async def add_ops_user(session: AsyncSession, caller: Caller, body: OpsUserCreate, *, api_key: str | None = None
                       ) -> OpsUserIssued:
    """A new ops user with a new key (or ``api_key``: the development key ``pathways up`` made)."""
    if await session.get(OpsUser, body.id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"An ops user '{body.id}' already exists.")
    plain = api_key or new_key(OPS_KEY_PREFIX).api_key
    user = OpsUser(id=body.id, name=body.name or body.id, role=body.role, key_hash=hash_api_key(plain),
                   expires_at=body.expires_at(utcnow()))
    issue(session, caller, user, kind="ops-user", subject=f"ops user {body.id} ({body.role})")
    await session.flush()
    return OpsUserIssued(api_key=plain, **OpsUserPublic.of(user).model_dump())


class NoBootstrap(Exception):
    """An ops user who can sign in exists: make new ones through the ops API."""


async def bootstrap_ops_user(db: Database, body: OpsUserCreate, *, api_key: str | None = None) -> OpsUserIssued:
    """The first ops user, written straight to the directory's database (audited as ``bootstrap``)."""
    async with db.transaction() as session:
        now = utcnow()
        usable = (await session.exec(select(OpsUser.id).where(
            col(OpsUser.revoked_at).is_(None), col(OpsUser.expires_at) > now).limit(1))).first()
        if usable is not None:
            raise NoBootstrap(f"ops user '{usable}' can already sign in: create others with 'pathways ops-users create'")
        return await add_ops_user(session, BOOTSTRAP, body, api_key=api_key)


async def _ops_user(session: AsyncSession, user_id: str) -> OpsUser:
    return await find(session, OpsUser, user_id, f"ops user '{user_id}'")


@ops.post("/ops-users", response_model=OpsUserIssued, status_code=201,
          summary="Create a named ops credential (shown once), valid on every service's ops API",
          responses=errors(409))
async def create_ops_user(body: OpsUserCreate, runtime: RuntimeDep,
                          session: SessionDep, caller: OpsCaller) -> OpsUserIssued:
    async with runtime.db.transaction(session):
        return await add_ops_user(session, caller, body)


@ops.get("/ops-users", response_model=list[OpsUserPublic], summary="Every ops user, with state and expiry")
async def list_ops_users(session: SessionDep, caller: OpsCaller, runtime: RuntimeDep) -> list[OpsUserPublic]:
    users = [OpsUserPublic.of(u) for u in (await session.exec(select(OpsUser).order_by(col(OpsUser.id)))).all()]
    await record_read(runtime.db, session, caller, "list-ops-users", detail=f"{len(users)} shown")
    return users


@ops.post("/ops-users/{user_id}/rotate", response_model=OpsUserIssued,
          summary="A new key (shown once) and expiry for an ops user; the old key stops working",
          responses=errors(404, 409))
async def rotate_ops_user(user_id: str, runtime: RuntimeDep, session: SessionDep, caller: OpsCaller,
                          body: RotateRequest | None = None) -> OpsUserIssued:
    async with runtime.db.transaction(session):
        user = await _ops_user(session, user_id)
        plain = await change(session, caller, user, "rotate", kind="ops-user", prefix=OPS_KEY_PREFIX,
                             subject=f"ops user {user_id}", rotation=body)
    assert plain is not None
    return OpsUserIssued(api_key=plain, **OpsUserPublic.of(user).model_dump())


@ops.post("/ops-users/{user_id}/{action}", response_model=OpsUserPublic,
          summary="Expire (`expire`, optionally at a given time) or revoke (`revoke`) an ops user's key",
          responses=errors(404, 409))
async def end_ops_user(user_id: str, action: EndAction, runtime: RuntimeDep,
                       session: SessionDep, caller: OpsCaller,
                       body: ExpireRequest | None = None) -> OpsUserPublic:
    async with runtime.db.transaction(session):
        user = await _ops_user(session, user_id)
        await change(session, caller, user, action, kind="ops-user", prefix=OPS_KEY_PREFIX,
                     subject=f"ops user {user_id}", expiry=body)
    return OpsUserPublic.of(user)


async def find_ops_user(session: AsyncSession, api_key: str) -> OpsUser | None:
    user = (await session.exec(select(OpsUser).where(OpsUser.key_hash == hash_api_key(api_key)))).first()
    return user if user is not None and user.usable() else None


async def verify_ops(request: Request, key: str, session: AsyncSession) -> Caller | None:
    """The directory's own ``OpsVerifier``: a lookup in the request's session."""
    user = await find_ops_user(session, key)
    caller = Caller(CallerKind(user.role), user.id) if user else None
    # End the read so the connection goes back to the pool: handlers that write open their own
    # transaction, and a request must not hold one connection while it waits for another.
    await session.rollback()
    return caller


@internal.post(AUTHENTICATE_PATH, response_model=OpsIdentity,
               summary="Which ops user holds this key, while it is usable (for the other services)",
               responses=errors(404))
async def authenticate_ops(body: OpsKey, session: SessionDep, _caller: OpsCheckers) -> OpsIdentity:
    user = await find_ops_user(session, body.api_key)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No ops user holds a usable key like that.")
    return OpsIdentity(ops_user_id=user.id, name=user.name, role=user.role)
