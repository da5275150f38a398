-- 002_record_ids: the Dataverse row id (GUID) <-> record key table.
--
-- Dataverse change tracking reports a delete as {"id": "<guid>", "reason": "deleted"} only, so
-- the key of a deleted row must be known from before. dw-capture records, for every row it
-- captured from Dataverse (written with the checkpoint, after Kafka acknowledged the rows), the
-- row id and its keys; dw-writer may record the rows it creates in Dataverse the same way.
--
-- Applied by dw_pg_migrate() inside its migration transaction: no BEGIN/COMMIT here, and never
-- edit this file once released; add a new NNN_name.sql instead.

CREATE TABLE dw_record_ids (
    map           text        NOT NULL,  -- the map name (schemas/maps/<map>.json)
    record_id     uuid        NOT NULL,  -- the Dataverse primary id of the row (e.g. accountid)
    canonical_key text        NOT NULL,  -- the canonical record key (the Kafka message key)
    source_key    jsonb       NOT NULL,  -- the integration key by Dataverse column (envelope "key")
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (map, record_id)
);

-- the reverse direction: a record's row id by its key (writers resolving a delete)
CREATE INDEX dw_record_ids_key ON dw_record_ids (map, canonical_key);
