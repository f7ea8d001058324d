-- When each merchant API key was last used, to the minute: written at most
-- once a minute per key (`api_keys::touch`), shown by `till api-key list`.
ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;
