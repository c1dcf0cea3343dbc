"""Credentials for the Hyper-V nodes: from the environment or a private secrets file, and a log
processor that keeps them out of every log line."""

from __future__ import annotations

import stat
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

ENV_USER = "RECONCILER_HYPERV_USER"
ENV_PASSWORD = "RECONCILER_HYPERV_PASSWORD"
REDACTED = "***"


class CredentialsError(ValueError):
    """Credentials are missing, incomplete or stored unsafely."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return self.username


def load_credentials(env: Mapping[str, str], secrets_file: Path | None) -> Credentials:
    """Both env variables if set, else the secrets file (YAML ``username:``/``password:``)."""
    user, password = env.get(ENV_USER), env.get(ENV_PASSWORD)
    if user and password:
        return Credentials(user, password)
    if user or password:
        missing = ENV_PASSWORD if user else ENV_USER
        raise CredentialsError(f"{missing} is not set (set both {ENV_USER} and {ENV_PASSWORD})")
    if secrets_file is None:
        raise CredentialsError(
            f"no credentials: set {ENV_USER} and {ENV_PASSWORD}, or give a secrets file"
        )
    return _read_secrets_file(secrets_file)


def _read_secrets_file(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise CredentialsError(f"{path}: cannot read secrets file: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{path}: secrets file is accessible by group or others "
            f"(mode {stat.filemode(mode)}); run: chmod 600 {path}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise CredentialsError(f"{path}: cannot read secrets file: {err}") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise CredentialsError(f"{path}:{where} not valid YAML") from None  # no echo of secrets
    if not isinstance(data, dict):
        raise CredentialsError(f"{path}: expected a mapping with username and password")
    for key in ("username", "password"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise CredentialsError(f"{path}: field {key!r} is missing or not a string")
    unknown = sorted(set(data) - {"username", "password"})
    if unknown:
        raise CredentialsError(f"{path}: unknown field(s) {', '.join(map(str, unknown))}")
    return Credentials(data["username"], data["password"])


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = str(value)  # exceptions and other objects: keep them only if they hold no secret
    return _scrub(text, secrets) if any(s in text for s in secrets) else value


def redact_processor(
    secrets: Iterable[str],
) -> structlog.typing.Processor:
    """A structlog processor replacing each secret, anywhere in an event, by ``***``.
    Place it after exception formatting and before the renderer."""
    kept = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def redact(
        logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = _scrub(value, kept)
        return event_dict

    return redact


def install_redaction(secrets: Iterable[str]) -> None:
    """Insert ``redact_processor`` before the renderer of the current structlog set-up."""
    processors = list(structlog.get_config()["processors"])
    position = max(len(processors) - 1, 0)
    processors.insert(position, redact_processor(secrets))
    structlog.configure(processors=processors)
