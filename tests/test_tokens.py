"""Tenants proven, not claimed: bearer tokens issued and verified (the mesh's own key, an external
issuer's JWKS), and the module guard over real gRPC with mTLS — operators prove their tenant
with a token, mesh processes are trusted for x-tenant-id, a dependent module carries the tenant
through to its dependencies."""

from __future__ import annotations

import asyncio
import contextvars
import json
import stat
from pathlib import Path

import grpc
import jwt
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import PROJECT
from inventory.v1 import inventory_pb2, inventory_pb2_grpc
from mesh.control.tenancy import TenancyStore
from mesh.protocol.errors import MeshError, error_info
from mesh.protocol.tokens import (
    AUDIENCE,
    ISSUER,
    ISSUER_ENV,
    JWKS_ENV,
    VERIFICATION_KEYS_FILE,
    SigningKey,
    TenantClaims,
    TokenVerifier,
    bearer_token,
    issue,
    keys_from_pem,
    verify,
)
from orders.v1 import orders_pb2, orders_pb2_grpc
from sdk import tenant_metadata
from sdk.testing import eventually
from users.v1 import users_pb2, users_pb2_grpc

MODULES = PROJECT / "modules"
OPERATOR = "operator:viewer:ada"


@pytest.fixture
def signing_key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "token-key.pem")


# --- tokens alone -----------------------------------------------------------------------


def test_a_token_carries_tenant_company_roles_and_subject(signing_key):
    token = issue(signing_key, "acme", company="north", roles=["clerk", "buyer"], subject="ada")
    claims = verify(token, keys_from_pem(signing_key.public_pem))
    assert claims == TenantClaims("acme", "north", ("clerk", "buyer"), "ada")
    assert jwt.get_unverified_header(token)["kid"] == signing_key.kid


def test_the_signing_key_is_private_and_kept(tmp_path, signing_key):
    path = tmp_path / "token-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load_or_create(path).kid == signing_key.kid


@pytest.mark.parametrize(
    ("problem", "make", "says"),
    [
        ("expired", lambda key, elsewhere: issue(key, "acme", ttl_seconds=-60), "has expired"),
        (
            "signature",
            lambda key, elsewhere: issue(SigningKey.load_or_create(elsewhere / "k.pem"), "acme"),
            "not signed by a key this mesh trusts",
        ),
        ("tenant", lambda key, elsewhere: issue(key, ""), "names no tenant"),
        ("malformed", lambda key, elsewhere: "not.a.jwt", "malformed"),
        (
            "audience",
            lambda key, elsewhere: jwt.encode(
                {"iss": ISSUER, "aud": "another-service", "exp": 2**31, "tenant": "acme"},
                key.private_key,
                algorithm="ES256",
            ),
            "not for this mesh",
        ),
    ],
)
def test_a_refused_token_says_what_is_wrong_and_how_to_get_one(tmp_path, signing_key, problem, make, says):
    with pytest.raises(MeshError) as raised:
        verify(make(signing_key, tmp_path), keys_from_pem(signing_key.public_pem))
    assert raised.value.reason == "UNAUTHENTICATED"
    assert raised.value.metadata["token"] == problem
    assert says in raised.value.message and "mesh token issue --tenant" in raised.value.message


def test_an_external_issuers_jwks_is_looked_up_by_kid(tmp_path):
    issuer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(issuer_key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}))
    claims = {"iss": "https://idp.example/realms/mesh", "aud": AUDIENCE, "exp": 2**31, "tenant": "acme", "sub": "bo"}
    token = jwt.encode(claims, issuer_key, algorithm="RS256", headers={"kid": "idp-1"})
    verifier = TokenVerifier.for_module(None, {JWKS_ENV: str(jwks), ISSUER_ENV: "https://idp.example/realms/mesh"})
    assert verifier.verify(token) == TenantClaims("acme", subject="bo")

    wrong_issuer = jwt.encode({**claims, "iss": "https://elsewhere"}, issuer_key, algorithm="RS256")
    with pytest.raises(MeshError) as raised:
        verifier.verify(wrong_issuer)
    assert raised.value.metadata["token"] == "audience"


def test_a_module_reads_its_keys_again_when_the_file_changes(tmp_path, signing_key):
    keys_file = tmp_path / VERIFICATION_KEYS_FILE
    verifier = TokenVerifier(keys_file)
    token = issue(signing_key, "acme")
    with pytest.raises(MeshError) as raised:
        verifier.verify(token)
    assert raised.value.metadata["token"] == "no-keys"
    keys_file.write_bytes(signing_key.public_pem)
    assert verifier.verify(token).tenant == "acme"


def test_whose_word_a_calls_tenant_is(tmp_path, signing_key):
    """A token that proves the tenant it claims is enough whoever calls (the certificate is
    not read then); a tenant claimed without one is taken from mesh processes only; an
    operator's token of another tenant is refused, a module forwarding it is trusted."""
    from mesh.protocol.identity import Identity
    from sdk.runtime._server import proven_tenant

    (tmp_path / VERIFICATION_KEYS_FILE).write_bytes(signing_key.public_pem)
    verifier = TokenVerifier(tmp_path / VERIFICATION_KEYS_FILE)
    bearer = f"Bearer {issue(signing_key, 'acme')}"
    asked: list[str] = []

    def caller(name: str):
        def identity():
            asked.append(name)
            return Identity.parse(name)

        return identity

    operator, module = caller(OPERATOR), caller("module:orders")
    proven = proven_tenant({"x-tenant-id": "acme", "authorization": bearer}, operator, verifier)
    assert (proven.tenant, asked) == ("acme", [])
    assert proven_tenant({"authorization": bearer}, operator, verifier).tenant == "acme"
    assert proven_tenant({"x-tenant-id": "globex"}, module, verifier).tenant == "globex"
    assert proven_tenant({"x-tenant-id": "globex", "authorization": bearer}, module, verifier).tenant == "globex"
    assert proven_tenant({}, operator, verifier).tenant == ""
    for metadata, says in (
        ({"x-tenant-id": "globex"}, "may not just claim tenant globex"),
        ({"x-tenant-id": "globex", "authorization": bearer}, "the bearer token is for tenant acme"),
        ({"x-tenant-id": "acme", "authorization": "Bearer not-a-token"}, "malformed"),
    ):
        with pytest.raises(MeshError) as refused:
            proven_tenant(metadata, operator, verifier)
        assert refused.value.reason == "UNAUTHENTICATED" and says in refused.value.message
    assert proven_tenant({"x-tenant-id": "globex"}, lambda: None, None).tenant == "globex"  # plaintext


def test_the_gate_remembers_an_admission_only_while_what_it_depended_on_holds(tmp_path, signing_key, monkeypatch):
    """A call let through is remembered for the same (x-tenant-id, authorization) for at most a
    second, never past its token's expiry or a change of the tenancy view, and never when the
    caller's certificate decided its tenant (the next caller with that metadata may be anyone)."""
    from types import SimpleNamespace

    import sdk.runtime._admissions as admissions_module
    from sdk._tenancy import CallTenant
    from sdk.runtime._admissions import REMEMBER_SECONDS, Admissions

    now = [1_000.0]
    monkeypatch.setattr(admissions_module, "time", SimpleNamespace(time=lambda: now[0]))
    (tmp_path / VERIFICATION_KEYS_FILE).write_bytes(signing_key.public_pem)
    verifier = TokenVerifier(tmp_path / VERIFICATION_KEYS_FILE)
    acme = f"Bearer {issue(signing_key, 'acme')}"
    view = SimpleNamespace(changes=0)

    def remembered(metadata: tuple[str, str], tokens: TokenVerifier | None = verifier) -> CallTenant | None:
        admissions = Admissions()
        admissions.remember(metadata, CallTenant(metadata[0], metadata[1]), view, tokens)
        return admissions.admitted(metadata, view)

    assert remembered(("acme", acme)) == CallTenant("acme", acme)  # the token proves what it claims
    assert remembered(("acme", "")) is None  # a mesh process's claim: its certificate decided
    assert remembered(("", acme)) is None  # a token alone: a module forwarding it gets no tenant
    assert remembered(("globex", acme)) is None  # a module passing on an operator's token of another tenant
    assert remembered(("acme", "Bearer not-a-token")) is None
    assert remembered(("acme", ""), tokens=None) == CallTenant("acme", "")  # plaintext: as sent
    assert remembered(("", "")) == CallTenant("", "")

    admissions = Admissions()
    admissions.remember(("acme", acme), CallTenant("acme", acme), view, verifier)
    assert admissions.admitted(("acme", acme), SimpleNamespace(changes=0)) is None  # another view
    view.changes += 1  # a tenant or flag changed
    assert admissions.admitted(("acme", acme), view) is None
    admissions.remember(("acme", acme), CallTenant("acme", acme), view, verifier)
    now[0] += REMEMBER_SECONDS
    assert admissions.admitted(("acme", acme), view) is None  # the key files may have changed

    short = f"Bearer {issue(signing_key, 'acme', ttl_seconds=600)}"
    verifier.verify(bearer_token(short))
    expires = verifier.honoured_until(bearer_token(short))
    now[0] = expires - REMEMBER_SECONDS / 2
    admissions.remember(("acme", short), CallTenant("acme", short), view, verifier)
    assert admissions.admitted(("acme", short), view) is not None
    now[0] = expires
    assert admissions.admitted(("acme", short), view) is None  # expired, though not a second old


def test_tenant_metadata_forwards_the_served_calls_authorization():
    from sdk._tenancy import CallTenant, current_call  # the server gate's side, set here by hand

    def inside_a_call() -> list[tuple[str, str]]:
        current_call.set(CallTenant("acme", "Bearer abc"))
        return tenant_metadata("acme")

    assert contextvars.copy_context().run(inside_a_call) == [("x-tenant-id", "acme"), ("authorization", "Bearer abc")]
    assert tenant_metadata("acme") == [("x-tenant-id", "acme")]


# --- the guard over real gRPC -----------------------------------------------------------


def trust(harness, key: SigningKey) -> None:
    """Give the harness's module the mesh's public token key, as `mesh up` does."""
    (Path(harness.server.transport.folder) / VERIFICATION_KEYS_FILE).write_bytes(key.public_pem)


async def enable(nats_url: str, tenant: str, *harnesses) -> None:
    client = await nats.connect(nats_url)
    store = TenancyStore(client.jetstream())
    for harness in harnesses:
        await store.set_enabled(tenant, harness.context.name, True, "test")
    await client.close()
    for harness in harnesses:
        await eventually(
            lambda h=harness: h.context.tenants.is_enabled(tenant), f"{harness.context.name} enabled for {tenant}"
        )


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_operators_prove_their_tenant_with_a_token(module_harness, mesh_nats, signing_key, tmp_path):
    async with module_harness(MODULES / "users") as users:
        trust(users, signing_key)
        await enable(mesh_nats.url, "acme", users)
        operator = users_pb2_grpc.UsersStub(users.channel_as(OPERATOR))
        ada = users_pb2.CreateUserRequest(name="Ada", email="ada@example.org")

        claimed = await refused(operator.CreateUser(ada, metadata=[("x-tenant-id", "acme")]))
        assert claimed.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(claimed).reason == "UNAUTHENTICATED" and "authorization: Bearer" in claimed.details()

        acme = issue(signing_key, "acme")
        created = (await operator.CreateUser(ada, metadata=[bearer(acme)])).user
        everyone = users_pb2.ListUsersRequest()
        listed = await operator.ListUsers(everyone, metadata=[bearer(acme), ("x-tenant-id", "acme")])
        assert [user.id for user in listed.users] == [created.id]

        disabled = await refused(operator.ListUsers(everyone, metadata=[bearer(issue(signing_key, "globex"))]))
        assert error_info(disabled).reason == "MODULE_DISABLED_FOR_TENANT"

        disagreeing = await refused(operator.ListUsers(everyone, metadata=[bearer(acme), ("x-tenant-id", "globex")]))
        assert disagreeing.code() == grpc.StatusCode.UNAUTHENTICATED and "is for tenant acme" in disagreeing.details()

        expired = await refused(
            operator.ListUsers(
                users_pb2.ListUsersRequest(), metadata=[bearer(issue(signing_key, "acme", ttl_seconds=-1))]
            )
        )
        assert expired.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in expired.details()

        stranger = SigningKey.load_or_create(tmp_path / "stranger.pem")
        forged = await refused(operator.ListUsers(everyone, metadata=[bearer(issue(stranger, "acme"))]))
        assert forged.code() == grpc.StatusCode.UNAUTHENTICATED and "not signed" in forged.details()

        # The coordinator (a mesh process) is trusted for x-tenant-id.
        trusted = await users.stub(users_pb2_grpc.UsersStub).ListUsers(
            users_pb2.ListUsersRequest(), metadata=[("x-tenant-id", "acme")]
        )
        assert [user.id for user in trusted.users] == [created.id]


async def test_an_admission_is_never_passed_on_to_another_caller_or_past_a_disabled_tenant(
    module_harness, mesh_nats, signing_key
):
    """The gate remembers the calls it let through (bench/rpc.py): what a mesh process was let
    through on its certificate is still refused to an operator with the same metadata, and a
    tenant disabled is refused on the next call after the module learns of it."""
    async with module_harness(MODULES / "users") as users:
        trust(users, signing_key)
        await enable(mesh_nats.url, "acme", users)
        everyone = users_pb2.ListUsersRequest()
        claim = [("x-tenant-id", "acme")]
        await users.stub(users_pb2_grpc.UsersStub).ListUsers(everyone, metadata=claim)  # the coordinator's
        operator = users_pb2_grpc.UsersStub(users.channel_as(OPERATOR))
        claimed = await refused(operator.ListUsers(everyone, metadata=claim))
        assert claimed.code() == grpc.StatusCode.UNAUTHENTICATED

        proven = [bearer(issue(signing_key, "acme")), *claim]
        for _ in range(3):
            await operator.ListUsers(everyone, metadata=proven)
        client = await nats.connect(mesh_nats.url)
        try:
            await TenancyStore(client.jetstream()).set_enabled("acme", "users", False, "test")
        finally:
            await client.close()
        await eventually(lambda: not users.context.tenants.is_enabled("acme"), "users disabled for acme")
        disabled = await refused(operator.ListUsers(everyone, metadata=proven))
        assert error_info(disabled).reason == "MODULE_DISABLED_FOR_TENANT"


async def test_calls_in_flight_together_are_each_judged_on_their_own_metadata(module_harness, mesh_nats, signing_key):
    """The gate reads a call's metadata as the handler lookup was given it (sdk/runtime/_gating.py):
    with many calls of different tenants, and refused ones, in flight at once, each is answered
    for its own tenant or refused for its own reason, never on another call's metadata."""
    async with module_harness(MODULES / "users") as users:
        trust(users, signing_key)
        await enable(mesh_nats.url, "acme", users)
        await enable(mesh_nats.url, "globex", users)
        operator = users_pb2_grpc.UsersStub(users.channel_as(OPERATOR))
        tokens = {tenant: issue(signing_key, tenant) for tenant in ("acme", "globex", "initech")}
        created = {
            tenant: (
                await operator.CreateUser(
                    users_pb2.CreateUserRequest(name=tenant, email=f"ops@{tenant}.example"),
                    metadata=[bearer(tokens[tenant])],
                )
            ).user.id
            for tenant in ("acme", "globex")
        }

        async def list_as(tenant: str) -> str:
            try:
                listed = await operator.ListUsers(users_pb2.ListUsersRequest(), metadata=[bearer(tokens[tenant])])
            except grpc.aio.AioRpcError as error:
                return f"refused {error_info(error).reason}"
            return ",".join(user.id for user in listed.users)

        callers = ["acme", "globex", "initech"] * 60
        answers = await asyncio.gather(*(list_as(tenant) for tenant in callers))
        expected = {**created, "initech": "refused MODULE_DISABLED_FOR_TENANT"}
        assert [answer for answer, tenant in zip(answers, callers, strict=True) if answer != expected[tenant]] == []


async def test_a_dependent_module_carries_the_tenant_through(module_harness, mesh_nats, signing_key):
    async with module_harness(MODULES / "users") as users, module_harness(MODULES / "inventory") as inventory:
        async with module_harness(
            MODULES / "orders", dependencies={"users": users.address, "inventory": inventory.address}
        ) as orders:
            for harness in (users, inventory, orders):
                trust(harness, signing_key)
            await enable(mesh_nats.url, "acme", users, inventory, orders)
            as_acme = [("x-tenant-id", "acme")]
            ada = (
                await users.stub(users_pb2_grpc.UsersStub).CreateUser(
                    users_pb2.CreateUserRequest(name="Ada", email="ada@example.org"), metadata=as_acme
                )
            ).user
            stock = inventory.stub(inventory_pb2_grpc.InventoryStub)
            await stock.SetStock(inventory_pb2.SetStockRequest(sku="book-42", quantity=5), metadata=as_acme)

            operator = orders_pb2_grpc.OrdersStub(orders.channel_as(OPERATOR))
            placed = await operator.PlaceOrder(
                orders_pb2.PlaceOrderRequest(user_id=ada.id, sku="book-42", quantity=2),
                metadata=[bearer(issue(signing_key, "acme"))],
            )
            assert placed.order.user_id == ada.id  # users found Ada among acme's users
            left = await stock.GetStock(inventory_pb2.GetStockRequest(sku="book-42"), metadata=as_acme)
            assert left.quantity == 3  # inventory reserved from acme's stock
