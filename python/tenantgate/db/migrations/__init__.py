"""Versioned SQL migrations: `public/` for the shared tables, `tenant/` for every tenant schema."""
