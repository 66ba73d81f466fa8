"""Bearer tokens of the lineage server: stored hashed, one tenant and a set of scopes each.

A token reads ``lnt.<tenant>.<id>.<secret>``: the tenant is in clear so an offline client knows
which tenant its artifact ids are derived for (``lineage.domain.ids``), the id finds the row,
and only the SHA-256 of the secret (32 random bytes, so a fast hash is enough: nothing to
brute-force) is stored. The actor every event written with a token carries is the token's own
``actor``, never one a client sends. Scopes: ``read`` (queries), ``write`` (batches of commands),
``admin`` (the tenant's tokens); each route asks for one.

A token may expire (``expires_at``, UTC): from then on it is refused like a revoked one, and
``list`` shows it ``expired``. Without one it lives until revoked. Tables made before expiry
existed gain the column on open.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Engine, String, Table, Text, inspect, select, text, update
from sqlalchemy import MetaData as _MetaData

from lineage.adapters.database import schema_change
from lineage.errors import ValidationError

SCOPES = ("read", "write", "admin")
PREFIX = "lnt"
TENANT_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ACTOR_RULE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_ID_RULE = re.compile(r"^[0-9a-f]{16}$")

metadata = _MetaData()
tokens = Table(
    "lineage_tokens", metadata,
    Column("id", String(16), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("actor", Text, nullable=False),
    Column("scopes", Text, nullable=False),  # comma-separated, from SCOPES
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
    Column("expires_at", String(32)),  # None: never
)
DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the token's tenant, actor and scopes."""

    token_id: str
    tenant_id: str
    actor: str
    scopes: frozenset[str]
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def tenant_of_token(text: str) -> str:
    """The tenant a token names (no lookup): what an offline client derives ids for.
    ValidationError when ``text`` is not a lineage token."""
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) != 4 or parts[0] != PREFIX or not TENANT_RULE.match(parts[1]):
        raise ValidationError("token", "is not a lineage token (lnt.<tenant>.<id>.<secret>, "
                              "from `lineage tokens create`)")
    return parts[1]


def expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """When a token given ``--expires TEXT`` expires: a duration from ``now`` (``90m``,
    ``12h``, ``30d``, ``2w``) or an ISO time with a zone; None for None. ValidationError
    naming ``expires`` for anything else, or a time already past."""
    if text is None:
        return None
    now = now or datetime.now(UTC)
    found = DURATION.match(text.strip()) if isinstance(text, str) else None
    if found is not None:
        return now + timedelta(seconds=int(found[1]) * _UNIT_S[found[2]])
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError("expires", "must be a duration (90m, 12h, 30d, 2w) or an ISO time "
                              "with a zone (2027-01-31T00:00:00+00:00)", text)
    if moment <= now:
        raise ValidationError("expires", "is already past", text)
    return moment.astimezone(UTC)


def check_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    chosen = sorted(set(scopes), key=SCOPES.index) if set(scopes) <= set(SCOPES) else None
    if not chosen:
        raise ValidationError("scopes", f"must be one or more of {', '.join(SCOPES)}", scopes)
    return chosen


class TokenStore:
    """Tokens in a SQLAlchemy database (the store's own). Thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with schema_change(engine) as conn:
            metadata.create_all(conn)
            if "expires_at" not in {c["name"] for c in inspect(conn).get_columns(tokens.name)}:
                conn.execute(text("ALTER TABLE lineage_tokens ADD COLUMN expires_at VARCHAR(32)"))

    def create(self, tenant_id: str, actor: str, scopes: list[str] | tuple[str, ...],
               expires_at: datetime | None = None) -> str:
        """A new token's full text (shown once; only its hash is kept); refused once
        ``expires_at`` (an aware time) has come, when given."""
        if not isinstance(tenant_id, str) or not TENANT_RULE.match(tenant_id):
            raise ValidationError("tenant", "must be 1-64 letters, digits, '-' or '_', starting "
                                  "with a letter or digit", tenant_id)
        if not isinstance(actor, str) or not ACTOR_RULE.match(actor) or not actor.strip():
            raise ValidationError("actor", "must be one line of 1-128 characters", actor)
        chosen = check_scopes(scopes)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(tokens.insert().values(
                id=token_id, tenant_id=tenant_id, actor=actor, scopes=",".join(chosen),
                secret_sha256=_digest(secret), created_at=_now(),
                expires_at=None if expires_at is None else _iso(expires_at)))
        return f"{PREFIX}.{tenant_id}.{token_id}.{secret}"

    def list(self, tenant_id: str | None = None) -> list[dict[str, object]]:
        """Tokens (never their secrets), oldest first; a tenant's only when given. ``state``
        is ``live``, ``revoked`` or ``expired``."""
        query = select(tokens.c.id, tokens.c.tenant_id, tokens.c.actor, tokens.c.scopes,
                       tokens.c.created_at, tokens.c.revoked_at,
                       tokens.c.expires_at).order_by(tokens.c.created_at)
        if tenant_id is not None:
            query = query.where(tokens.c.tenant_id == tenant_id)
        now = _now()
        with self.engine.connect() as conn:
            return [{**row._asdict(), "scopes": row.scopes.split(","), "state": "revoked"
                     if row.revoked_at else "expired" if row.expires_at and row.expires_at <= now
                     else "live"} for row in conn.execute(query)]

    def revoke(self, token_id: str, *, tenant_id: str | None = None) -> bool:
        """Revoke a token (of ``tenant_id`` only, when given); False when there is no such
        live token."""
        query = update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        if tenant_id is not None:
            query = query.where(tokens.c.tenant_id == tenant_id)
        with self.engine.begin() as conn:
            return conn.execute(query.values(revoked_at=_now())).rowcount == 1

    def authenticate(self, text: str) -> Principal | None:
        """The principal of a live token; None for anything else (malformed, unknown, revoked,
        wrong secret, another tenant's id, expired), in constant time for the secret."""
        parts = text.split(".") if isinstance(text, str) and len(text) <= 256 else []
        if len(parts) != 4 or parts[0] != PREFIX or not _ID_RULE.match(parts[2]):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens).where(tokens.c.id == parts[2])).one_or_none()
        if row is None or row.revoked_at is not None or row.tenant_id != parts[1]:
            return None
        if not hmac.compare_digest(row.secret_sha256, _digest(parts[3])):
            return None
        expires = None if row.expires_at is None else datetime.fromisoformat(row.expires_at)
        found = Principal(row.id, row.tenant_id, row.actor, frozenset(row.scopes.split(",")),
                          expires)
        return None if found.expired() else found


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    """UTC ISO with microseconds: such texts compare as their times do."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
