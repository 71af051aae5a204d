"""Optional parts of Tessera and the extra that installs each.

``pip install tessera-client`` brings the SDK's core only (psycopg, psycopg-pool, pyjwt). The
Supabase transport, the ``tessera`` command, the local stack and the benchmarks need more;
using one without its extra raises :class:`MissingExtra`, whose one-line message says what
to install.
"""

from __future__ import annotations

__all__ = ["MissingExtra"]


class MissingExtra(ImportError):
    """An optional part of Tessera was used without installing its extra.

    Args:
        extra: The extra to install (``supabase``, ``cli``, ``local``, ``bench``).
        feature: What was used, e.g. ``"from_supabase()"``.
        missing: The module that could not be imported.
    """

    def __init__(self, extra: str, feature: str, missing: str | None) -> None:
        self.extra = extra
        self.feature = feature
        super().__init__(
            f"{feature} needs Tessera's [{extra}] extra (module {missing!r} is missing): "
            f"pip install 'tessera-client[{extra}]'",
            name=missing,
        )
