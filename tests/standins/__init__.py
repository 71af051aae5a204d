"""Stand-ins for services that cannot run here. Each is minimal and says so in its name."""

from __future__ import annotations

from .realtime import RealtimeStandIn
from .supabase import RecordedRequest, SupabaseStandIn

__all__ = ["RealtimeStandIn", "RecordedRequest", "SupabaseStandIn"]
