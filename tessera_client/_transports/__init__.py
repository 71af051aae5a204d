"""Transports: how a call reaches PostgreSQL (directly, or through Supabase's HTTP API)."""

from __future__ import annotations

from tessera_client._transports._base import Filter, Returns, Select, Transport

__all__ = ["Filter", "Returns", "Select", "Transport"]
