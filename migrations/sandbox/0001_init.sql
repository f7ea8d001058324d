-- The sandbox PSP's own database (placeholder; the sandbox module owns it).
CREATE TABLE sandbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
