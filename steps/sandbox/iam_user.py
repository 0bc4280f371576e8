"""Everything attached to a simulated IAM user, and what moto lacks of it.

moto keeps login profiles, MFA devices, SSH public keys, signing certificates, groups
and policies, but deletes a user with most of them still attached, and has no
service-specific credentials at all. This module gives the sandbox:

- `delete_conflict`: DeleteUser's preconditions, in AWS's words (the gate answers
  409 DeleteConflict while anything is still attached);
- `ServiceCredentials`: a minimal List/Create/Update/Delete of service-specific
  credentials (Git credentials for CodeCommit and the like), answered by the gate;
- seeding a user's attachments from a scenario, and the attachments as data (for a
  snapshot without secrets, its restore, and `--world-out`).
"""

from __future__ import annotations

import json
import random
import secrets as _random
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from steps.clock import Clock, iso, parse_iso, utc

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"

# The order AWS documents for deleting a user; the first that still holds gives the error.
# (Wording as AWS answers DeleteConflict; the certificate, SSH and service-credential
# sentences follow the same pattern.)
_CONFLICTS = (
    ("login_profile", "Cannot delete entity, must delete login profile first."),
    ("access_keys", "Cannot delete entity, must delete access keys first."),
    ("signing_certificates", "Cannot delete entity, must delete signing certificates first."),
    ("ssh_public_keys", "Cannot delete entity, must delete SSH public keys first."),
    ("service_credentials", "Cannot delete entity, must delete service specific credentials first."),
    ("mfa_devices", "Cannot delete entity, must delete MFA device first."),
    ("inline_policies", "Cannot delete entity, must delete policies first."),
    ("attached_policies", "Cannot delete entity, must detach all policies first."),
    ("groups", "Cannot delete entity, must remove users from group first."),
)


def groups_of(iam: Any, user: Any) -> list[str]:
    return sorted(name for name, group in iam.groups.items() if user in group.users)


def delete_conflict(iam: Any, creds: ServiceCredentials, user_name: str) -> str | None:
    """Why DeleteUser must refuse now, or None (a missing user is moto's NoSuchEntity)."""
    user = iam.users.get(user_name)
    if user is None:
        return None
    held = {
        "login_profile": bool(user.password),
        "access_keys": bool(user.access_keys),
        "signing_certificates": bool(user.signing_certificates),
        "ssh_public_keys": bool(user.ssh_public_keys),
        "service_credentials": bool(creds.of(user_name)),
        "mfa_devices": bool(user.mfa_devices),
        "inline_policies": bool(user.policies),
        "attached_policies": bool(user.managed_policies),
        "groups": bool(groups_of(iam, user)),
    }
    return next((message for kind, message in _CONFLICTS if held[kind]), None)


# -- service-specific credentials ---------------------------------------------------------------


@dataclass
class ServiceCredential:
    id: str
    user: str
    service: str
    service_user: str
    status: str
    created: datetime
    password: str = field(default="", repr=False)  # in memory only, never in a snapshot

    def as_xml(self, with_password: bool = False) -> str:
        fields = [
            ("UserName", self.user),
            ("Status", self.status),
            ("ServiceUserName", self.service_user),
            ("CreateDate", iso(self.created)),
            ("ServiceSpecificCredentialId", self.id),
            ("ServiceName", self.service),
        ]
        if with_password:
            fields.append(("ServicePassword", self.password))
        return "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields)

    def as_data(self) -> dict[str, str]:
        return {
            "id": self.id,
            "service": self.service,
            "service_user": self.service_user,
            "status": self.status,
            "created": iso(self.created),
        }


class ServiceCredentials:
    """What moto lacks: a user's service-specific credentials, answered by the gate."""

    ACTIONS = frozenset(
        {
            "ListServiceSpecificCredentials",
            "CreateServiceSpecificCredential",
            "UpdateServiceSpecificCredential",
            "DeleteServiceSpecificCredential",
        }
    )

    def __init__(self, clock: Clock, account_id: str) -> None:
        self.clock = clock
        self.account_id = account_id
        self.by_user: dict[str, list[ServiceCredential]] = {}

    def of(self, user: str) -> list[ServiceCredential]:
        return list(self.by_user.get(user, []))

    def create(self, user: str, service: str, *, cred_id: str | None = None, created: datetime | None = None) -> ServiceCredential:
        cred = ServiceCredential(
            id=cred_id or "ACCA" + "".join(random.choices(string.ascii_uppercase + string.digits, k=17)),
            user=user,
            service=service,
            service_user=f"{user}-at-{self.account_id}",
            status="Active",
            created=created or self.clock.now(),
            password=_random.token_urlsafe(30),
        )
        self.by_user.setdefault(user, []).append(cred)
        return cred

    def forget_user(self, user: str) -> None:
        self.by_user.pop(user, None)

    def answer(self, action: str, body: bytes, iam: Any) -> tuple[int, str]:
        """(HTTP status, XML body) for one of ACTIONS, as IAM's query API answers."""
        params = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        user = params.get("UserName", "")
        if user and user not in iam.users:
            return error_xml(404, "NoSuchEntity", f"The user with name {user} cannot be found.")
        if action == "ListServiceSpecificCredentials":
            service = params.get("ServiceName")
            members = "".join(f"<member>{c.as_xml()}</member>" for c in self.of(user) if not service or c.service == service)
            return 200, _result(action, f"<ServiceSpecificCredentials>{members}</ServiceSpecificCredentials>")
        if action == "CreateServiceSpecificCredential":
            if len(self.of(user)) >= 2:
                return error_xml(409, "LimitExceeded", "Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: 2")
            cred = self.create(user, params.get("ServiceName", ""))
            return 200, _result(action, f"<ServiceSpecificCredential>{cred.as_xml(with_password=True)}</ServiceSpecificCredential>")
        wanted = params.get("ServiceSpecificCredentialId", "")
        found = next((c for c in self.of(user) if c.id == wanted), None)
        if found is None:
            return error_xml(404, "NoSuchEntity", f"No such credential {wanted} for user {user}.")
        if action == "UpdateServiceSpecificCredential":
            found.status = params.get("Status", found.status)
        else:
            self.by_user[user].remove(found)
        return 200, _result(action, "")


def _result(action: str, inner: str) -> str:
    request = f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
    result = f"<{action}Result>{inner}</{action}Result>" if inner else ""
    return f'<{action}Response xmlns="{IAM_NS}">{result}{request}</{action}Response>'


def error_xml(status: int, code: str, message: str) -> tuple[int, str]:
    body = (
        f'<ErrorResponse xmlns="{IAM_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, body


# -- seeding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentSeed:
    """What a scenario attaches to a user besides its keys (steps.sandbox.scenario.UserSeed)."""

    login_profile: bool = False
    mfa_devices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    inline_policies: Mapping[str, Any] = field(default_factory=dict)
    attached_policies: tuple[str, ...] = ()
    ssh_public_keys: int = 0
    signing_certificates: int = 0
    service_credentials: tuple[str, ...] = ()


_MANAGED_DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}]}


def managed_policy_arn(account_id: str, name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:iam::{account_id}:policy/{name}"


def ensure_group(iam: Any, name: str) -> Any:
    return iam.groups.get(name) or iam.create_group(name, "/")


def ensure_policy(iam: Any, account_id: str, name: str, document: str | None = None, path: str = "/") -> str:
    arn = managed_policy_arn(account_id, name)
    if arn not in iam.managed_policies:
        iam.create_policy(
            description="seeded by the training scenario",
            path=path,
            policy_document=document or json.dumps(_MANAGED_DOC),
            policy_name=name,
            tags=[],
        )
    return arn


def seed(iam: Any, creds: ServiceCredentials, account_id: str, user_name: str, seed: AttachmentSeed) -> None:
    if seed.login_profile:
        iam.create_login_profile(user_name, _random.token_urlsafe(18))
    for device in seed.mfa_devices:
        serial = iam.create_virtual_mfa_device(device, "/").serial_number
        iam.enable_mfa_device(user_name, serial, "123456", "654321")
    for group in seed.groups:
        ensure_group(iam, group)
        iam.add_user_to_group(group, user_name)
    for name, document in seed.inline_policies.items():
        iam.put_user_policy(user_name, name, document if isinstance(document, str) else json.dumps(document))
    for name in seed.attached_policies:
        iam.attach_user_policy(ensure_policy(iam, account_id, name), user_name)
    for n in range(seed.ssh_public_keys):
        iam.upload_ssh_public_key(user_name, ssh_public_key(f"{user_name}@laptop-{n + 1}"))
    for n in range(seed.signing_certificates):
        iam.upload_signing_certificate(user_name, signing_certificate(f"{user_name}-{n + 1}"))
    for service in seed.service_credentials:
        creds.create(user_name, service)


def ssh_public_key(comment: str) -> str:
    """A real OpenSSH public key line (the private half is thrown away)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + f" {comment}"


def signing_certificate(name: str) -> str:
    """A self-signed X.509 certificate in PEM (moto parses what it is given)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now().astimezone()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# -- as data ------------------------------------------------------------------------------------


def _when(value: Any) -> str | None:
    return iso(utc(value)) if isinstance(value, datetime) else None


def attachments(iam: Any, creds: ServiceCredentials, user_name: str) -> dict[str, Any]:
    """Everything attached to a user, without a secret: public key and certificate bodies
    are public, policy documents are not secrets; passwords are never included."""
    user = iam.users[user_name]
    virtual = iam.virtual_mfa_devices
    return {
        "login_profile": {"exists": True} if user.password else None,
        "mfa_devices": [{"serial": serial, "virtual": serial in virtual} for serial in sorted(user.mfa_devices)],
        "groups": groups_of(iam, user),
        "inline_policies": {name: doc if isinstance(doc, str) else json.dumps(doc) for name, doc in sorted(user.policies.items())},
        "attached_policies": sorted(user.managed_policies),
        "ssh_public_keys": [
            {"id": k.ssh_public_key_id, "status": k.status, "body": k.ssh_public_key_body, "uploaded": _when(k.upload_date)}
            for k in user.ssh_public_keys
        ],
        "signing_certificates": [
            {"id": c.id, "status": c.status, "body": c.body, "uploaded": _when(c.upload_date)} for c in user.signing_certificates.values()
        ],
        "service_credentials": [c.as_data() for c in creds.of(user_name)],
        "tags": {t["Key"]: t["Value"] for t in iam.tagger.list_tags_for_resource(user.arn)["Tags"]},
    }


def summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """What --world-out shows of a user's attachments: ids and statuses, no bodies."""
    return {
        "login_profile": data["login_profile"] is not None,
        "mfa_devices": [d["serial"] for d in data["mfa_devices"]],
        "groups": list(data["groups"]),
        "inline_policies": sorted(data["inline_policies"]),
        "attached_policies": list(data["attached_policies"]),
        "ssh_public_keys": [{"id": k["id"], "status": k["status"]} for k in data["ssh_public_keys"]],
        "signing_certificates": [{"id": c["id"], "status": c["status"]} for c in data["signing_certificates"]],
        "service_specific_credentials": [
            {"id": c["id"], "service": c["service"], "status": c["status"]} for c in data["service_credentials"]
        ],
        "tags": dict(data["tags"]),
    }


def account_data(iam: Any, account_id: str) -> dict[str, Any]:
    """The account-level things a user's attachments point at: groups (a user who left
    them must be able to rejoin) and customer-managed policies, and unassigned MFA devices."""
    prefix = f"arn:aws:iam::{account_id}:policy/"
    return {
        "groups": sorted(iam.groups),
        "policies": {
            arn: {"name": p.name, "path": p.path, "document": _default_document(p)}
            for arn, p in sorted(iam.managed_policies.items())
            if arn.startswith(prefix)
        },
        "virtual_mfa_devices": sorted(iam.virtual_mfa_devices),
    }


def _default_document(policy: Any) -> str:
    version = next((v for v in policy.versions if v.is_default), policy.versions[0])
    return version.document if isinstance(version.document, str) else json.dumps(version.document)


def restore_account(iam: Any, account_id: str, data: Mapping[str, Any]) -> None:
    for name in data.get("groups", []):
        ensure_group(iam, name)
    for arn, policy in data.get("policies", {}).items():
        if arn not in iam.managed_policies:
            iam.create_policy(
                description="", path=policy.get("path", "/"), policy_document=policy["document"], policy_name=policy["name"], tags=[]
            )
    for serial in data.get("virtual_mfa_devices", []):
        if serial not in iam.virtual_mfa_devices:
            name = serial.partition(":mfa")[2] or serial
            path, _, device = name.rpartition("/")
            iam.create_virtual_mfa_device(device, (path or "") + "/")


def restore_user(iam: Any, creds: ServiceCredentials, user_name: str, data: Mapping[str, Any]) -> None:
    """Put a user's attachments back from `attachments()` data. Secrets were never saved:
    a login profile gets a fresh random password, a service credential a fresh one."""
    if data.get("login_profile"):
        iam.create_login_profile(user_name, _random.token_urlsafe(18))
    for device in data.get("mfa_devices", []):
        iam.enable_mfa_device(user_name, device["serial"], "123456", "654321")
    for group in data.get("groups", []):
        ensure_group(iam, group)
        iam.add_user_to_group(group, user_name)
    for name, document in data.get("inline_policies", {}).items():
        iam.put_user_policy(user_name, name, document)
    for arn in data.get("attached_policies", []):
        iam.attach_user_policy(arn, user_name)
    user = iam.users[user_name]
    for item in data.get("ssh_public_keys", []):
        key = iam.upload_ssh_public_key(user_name, item["body"])
        key.ssh_public_key_id, key.status = item["id"], item["status"]
        if item.get("uploaded"):
            key.upload_date = parse_iso(item["uploaded"]).replace(tzinfo=None)
    for item in data.get("signing_certificates", []):
        cert = iam.upload_signing_certificate(user_name, item["body"])
        del user.signing_certificates[cert.id]
        cert.id, cert.status = item["id"], item["status"]
        user.signing_certificates[cert.id] = cert
    for item in data.get("service_credentials", []):
        cred = creds.create(user_name, item["service"], cred_id=item["id"], created=parse_iso(item["created"]))
        cred.status = item.get("status", "Active")
    tags = data.get("tags") or {}
    if tags:
        iam.tagger.tag_resource(user.arn, [{"Key": k, "Value": v} for k, v in tags.items()])
