-- 003_initial_sync: the runs of `dwctl initial-sync`.
--
-- One row per (run, map): a run of `--all` has a row per map, all with the same run id. A row's
-- position moves only after Kafka acknowledged every record of the page it follows, so
-- `dwctl initial-sync --resume RUN` starts again at the first page not yet acknowledged (the
-- records of a page that was in flight when the run stopped may be published twice; nothing is
-- skipped).
--
-- Applied by dw_pg_migrate() inside its migration transaction: no BEGIN/COMMIT here, and never
-- edit this file once released; add a new NNN_name.sql instead.

CREATE TABLE dw_initial_sync (
    run_id      text        NOT NULL,  -- the run (a random UUID printed at start)
    map         text        NOT NULL,  -- the map name
    source      text        NOT NULL CHECK (source IN ('fo', 'dv')),
    company     text,                  -- --company (F&O dataAreaId), NULL: every company
    seq         integer     NOT NULL,  -- the map's place in the run (dependency order)
    status      text        NOT NULL DEFAULT 'pending'  -- stopped: --max-pages or a signal
                            CHECK (status IN ('pending', 'running', 'stopped', 'done', 'failed')),
    pages       bigint      NOT NULL DEFAULT 0,  -- pages acknowledged
    records     bigint      NOT NULL DEFAULT 0,  -- records acknowledged
    position    text,                  -- the URL of the next page to read (NULL: the first)
    error       text,                  -- the last failure
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (run_id, map)
);
