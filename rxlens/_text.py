"""Text that rxlens builds from what a server sent: the key masked first, then the length bounded.

A server (a proxy, a misconfigured gateway) may quote the ``Authorization`` header it got in
any answer: an error body, a page where JSON was expected, a record of the wrong shape. Every
string rxlens makes from server text (an error message, an error's ``body``, a warning) goes
through :func:`mask_secrets` and only then through :func:`truncate`: a cut made first may fall
inside the key and leave a piece of it that no search for the whole key can find. One helper
each, here at the bottom of the layers, so the REST calls, the SSE transport, the errors and
the client share the very same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: What a masked secret becomes.
MASK = "***"

# The shortest piece of a secret that ``cut=True`` masks at the end of a text: shorter pieces
# reveal next to nothing, and masking them would garble ordinary endings (``...KiB`` against
# ``Bearer ...``).
_MIN_PIECE = 4


def secrets_of(headers: Mapping[str, str | bytes] | Mapping[str, str] | None) -> tuple[str, ...]:
    """The secrets a request's headers carry: the ``Authorization`` value and its credential.

    ``{"Authorization": "Bearer KEY"}`` gives ``("Bearer KEY", "KEY")``: a server may quote
    either.
    """
    if not headers:
        return ()
    header = headers.get("Authorization")
    if not header:
        return ()
    if isinstance(header, bytes):
        header = header.decode("utf-8", "replace")
    whole = header.strip()
    credential = whole.partition(" ")[2].strip()
    return tuple(s for s in (whole, credential) if s)


def mask_secrets(text: str, secrets: Iterable[str], *, cut: bool = False) -> str:
    """``text`` with every occurrence of each secret replaced by :data:`MASK`.

    ``cut=True`` says that ``text`` may have been cut short (a read of the first bytes of a
    body): a tail of at least four characters that is the start of a secret is masked too,
    since the rest of the secret was in the part not read.
    """
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    for secret in ordered:  # longest first: "Bearer KEY" before "KEY"
        text = text.replace(secret, MASK)
    if cut:
        for secret in ordered:
            for size in range(min(len(secret) - 1, len(text)), _MIN_PIECE - 1, -1):
                if text.endswith(secret[:size]):
                    text = text[:-size] + MASK
                    break
    return text


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were.

    Masking comes first (:func:`mask_secrets`): see the module's docstring.
    """
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"
