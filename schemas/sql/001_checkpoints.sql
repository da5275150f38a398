-- 001_checkpoints: where each capture source has got to.
--
-- dw-capture stores one position per (component, map, source): the Dataverse change-tracking
-- delta link, or the F&O watermark. It writes a position only after Kafka acknowledged every
-- record captured before it, and resumes from it after a restart, so nothing is lost.
--
-- Applied by dw_pg_migrate() (common/dw_pg.c) inside its migration transaction: no BEGIN/COMMIT
-- here, and never edit this file once released — add a new NNN_name.sql instead.

CREATE TABLE dw_checkpoint (
    component  text        NOT NULL,  -- the capturing component, e.g. 'dw-capture'
    map        text        NOT NULL,  -- the map name (schemas/maps/<map>.json)
    source     text        NOT NULL,  -- the captured system: 'fo' or 'dv'
    position   text        NOT NULL,  -- opaque to everyone but the component that wrote it
    updated_at timestamptz DEFAULT now(),
    PRIMARY KEY (component, map, source)
);
