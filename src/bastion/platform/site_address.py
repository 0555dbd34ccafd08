"""A site's address as a person gives it, and the TLS trust to reach it with: shared by
the programs that run away from the appliance (the access console, the integration
client). Each passes the exception type its own users are shown, and reads the
site's refusals and TLS failures the same way."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def site_url(text: str, error: type[Exception] = ValueError) -> str:
    """`https://HOST[:PORT]`, checked; anything else raises `error` saying what to give."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as bad:
        raise error(f"{text!r} is not a site address: {bad}.") from None
    if parts.scheme != "https" or not parts.hostname:
        raise error(f"{text!r} is not a site address; give it as https://HOST[:PORT].")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise error(f"Give the site as https://HOST[:PORT] only, not {text!r}.")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"https://{host}" + (f":{port}" if port else "")


def tls_context(ca_file: Path | None, error: type[Exception] = ValueError) -> ssl.SSLContext:
    """Trust the system's authorities, or only those in `ca_file` (TLS 1.2 at least)."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as bad:
        raise error(f"Cannot load the CA file {ca_file}: {bad}.") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def untrusted(error: BaseException, site: str, ca_file: Path | None) -> str | None:
    """If `error` (or what caused it) is a certificate the trust refused, what to say and
    do about it; None for any other failure."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            hint = (
                f"the CA file {ca_file} did not sign it"
                if ca_file
                else "give the CA that signed it with --ca-file"
            )
            return f"The certificate of {site} is not trusted ({cause.verify_message}); {hint}."
        cause = cause.__cause__ or cause.__context__
    return None


def site_message(response: httpx.Response) -> str:
    """The site's words for an error: `error.message`, else `detail`, else the reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return response.reason_phrase or f"HTTP {response.status_code}"
