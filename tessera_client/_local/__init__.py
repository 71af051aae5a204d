"""Local development stack: a Supabase-compatible PostgreSQL without Docker."""
