-- 004_ledger: the sync ledger of dw-writer.
--
-- One row per (map, canonical record key): what dwfleet last knows of the record on each side.
-- fo_hash / dv_hash hold the content hash (schemas/command.schema.json `content_hash`) of the
-- record's mapped content on that side, as dwfleet wrote it there or captured it from there, or
-- 'deleted' once dwfleet deleted it (or wrote the delete it came from); a command whose content
-- equals the target side's hash is an echo or a no-op and is not written (loop prevention).
-- fo_version / dv_version are the highest source versions (Dataverse versionnumber, F&O row
-- version; up to 39 digits) applied from each origin side: an older or equal version is stale
-- and is not written (version fencing). fo_key / dv_key are the record's keys on each side (the
-- target key written, or the origin key a command carried); dv_record_id the Dataverse row id.
--
-- dw-writer reads the rows of a batch with one SELECT and writes them with one upsert in one
-- transaction after the target accepted the batch (docs/writer.md).
--
-- Applied by dw_pg_migrate() inside its migration transaction: no BEGIN/COMMIT here, and never
-- edit this file once released; add a new NNN_name.sql instead.

CREATE TABLE dw_ledger (
    map           text        NOT NULL,  -- the map name (schemas/maps/<map>.json)
    canonical_key text        NOT NULL,  -- the canonical record key (the Kafka message key)
    fo_hash       text,                  -- last known mapped content at F&O, or 'deleted'
    dv_hash       text,                  -- last known mapped content at Dataverse, or 'deleted'
    fo_version    numeric(39, 0),        -- highest source version applied from F&O
    dv_version    numeric(39, 0),        -- highest source version applied from Dataverse
    fo_key        jsonb,                 -- the record's key at F&O, by F&O field
    dv_key        jsonb,                 -- the record's key at Dataverse, by column
    dv_record_id  uuid,                  -- the Dataverse row id, when known
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (map, canonical_key)
);
