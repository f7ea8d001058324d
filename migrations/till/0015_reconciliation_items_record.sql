-- Every decision on a till record, whatever its class: the missing_in_psp
-- sweep asks which of a day's final records a decision holds already.
CREATE INDEX reconciliation_items_record ON reconciliation_items(record_type, record_id);
