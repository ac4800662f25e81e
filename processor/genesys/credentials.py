"""Genesys OAuth client credentials: from Secrets Manager, or locally from the environment.

Read once per container. The secret is JSON `{"client_id": ..., "client_secret": ...}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from processor.genesys.errors import CredentialsMissing, TokenUnavailable
from processor.settings import GenesysSettings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient


@dataclass(frozen=True)
class Credentials:
    """An OAuth client; the secret never appears in a repr, a log or an error."""

    client_id: str
    client_secret: str = field(repr=False)


def load_credentials(
    settings: GenesysSettings, secrets: SecretsManagerClient | Any | None = None
) -> Credentials:
    """The configured credentials.

    Raises `CredentialsMissing` when none are configured or the secret is not
    the expected JSON, and `TokenUnavailable` (retriable) when Secrets Manager
    cannot be reached.
    """
    if settings.credentials_secret:
        client = secrets or boto3.session.Session().client("secretsmanager")
        try:
            response = client.get_secret_value(SecretId=settings.credentials_secret)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "AccessDeniedException"):
                raise CredentialsMissing(
                    f"secret {settings.credentials_secret!r} cannot be read ({code})"
                ) from None
            raise TokenUnavailable(f"Secrets Manager failed ({code})") from None
        except BotoCoreError as exc:
            raise TokenUnavailable(f"Secrets Manager failed ({type(exc).__name__})") from None
        return _parse(settings.credentials_secret, response.get("SecretString") or "")
    if settings.client_id and settings.client_secret:
        return Credentials(settings.client_id, settings.client_secret)
    raise CredentialsMissing(
        "no Genesys credentials: set GENESYS_CREDENTIALS_SECRET (a Secrets Manager secret "
        "holding JSON client_id and client_secret) or GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET"
    )


def _parse(name: str, text: str) -> Credentials:
    # Never echo the secret's text: say only what is wrong with its shape.
    try:
        data = json.loads(text)
    except ValueError:
        raise CredentialsMissing(f"secret {name!r} is not JSON") from None
    if not isinstance(data, dict):
        raise CredentialsMissing(f"secret {name!r} must be a JSON object")
    client_id, client_secret = data.get("client_id"), data.get("client_secret")
    if not isinstance(client_id, str) or not client_id:
        raise CredentialsMissing(f"secret {name!r} has no client_id string")
    if not isinstance(client_secret, str) or not client_secret:
        raise CredentialsMissing(f"secret {name!r} has no client_secret string")
    return Credentials(client_id, client_secret)
