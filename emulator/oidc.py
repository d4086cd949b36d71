"""OIDC ID tokens signed by the emulator's own RSA key, and the certs to verify them.

The token has the claims Google puts in a service account's ID token; the certs are
served in the shape of ``https://www.googleapis.com/oauth2/v1/certs`` ({kid: PEM x509}),
so ``google.oauth2.id_token.verify_token(..., certs_url=...)`` works unchanged.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME_SECONDS = 3600
# Reusing a token for a minute keeps RSA signing (about a millisecond) off the hot path.
_REUSE_SECONDS = 60


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """Holds the key pair, signs ID tokens and renders the public certs."""

    def __init__(self, key_pem: bytes | None = None) -> None:
        if key_pem is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            loaded = serialization.load_pem_private_key(key_pem, password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("the data file's OIDC key is not an RSA key")
            self._key = loaded
        public_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha1(public_der).hexdigest()
        self._cert_pem = self._self_signed_cert()
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    def private_pem(self) -> bytes:
        """The private key as PEM, for the data file."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def _self_signed_cert(self) -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "offload-emulator")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def certs_json(self) -> bytes:
        """The body of ``/oauth2/v1/certs``: {kid: PEM certificate}."""
        return json.dumps({self.kid: self._cert_pem}).encode()

    def token(self, *, audience: str, email: str, now: float | None = None) -> str:
        """An RS256 ID token for ``email`` with audience ``audience``."""
        t = time.time() if now is None else now
        cached = self._cache.get((audience, email))
        if cached is not None and t - cached[0] < _REUSE_SECONDS:
            return cached[1]
        iat = int(t)  # truncated, so never in the verifier's future
        sub = str(int(hashlib.sha256(email.encode()).hexdigest()[:16], 16))
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "azp": sub,
            "sub": sub,
            "email": email,
            "email_verified": True,
            "iat": iat,
            "exp": iat + TOKEN_LIFETIME_SECONDS,
        }
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = signing_input + "." + _b64(signature)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[(audience, email)] = (t, token)
        return token
