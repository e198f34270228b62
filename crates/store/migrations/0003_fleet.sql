-- A fleet: several rehearse hosts sharing one PostgreSQL store, each taking
-- work from one queue when it has room (`rehearse serve --fleet`). The tables
-- are created on SQLite too, so both engines keep one schema history, but
-- only a PostgreSQL store serves a fleet.

-- Every host that joined, one row per time it started: what it offers and
-- when it last said it was alive.
CREATE TABLE fleet_hosts (
    -- the host's name and a random suffix: a restarted host is a new row
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- where the other hosts reach its HTTP API
    url TEXT,
    cores INTEGER NOT NULL,
    memory_bytes BIGINT NOT NULL,
    -- how many nodes it takes in all, and how many more fit now
    slots_total INTEGER NOT NULL,
    slots_free INTEGER NOT NULL,
    -- the images it holds, JSON array of names
    images TEXT NOT NULL,
    -- its warm pool, JSON (NULL when it keeps none)
    pool TEXT,
    started_at_ms BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL,
    -- up or gone
    state TEXT NOT NULL,
    gone_reason TEXT
);

CREATE INDEX fleet_hosts_state ON fleet_hosts (state, heartbeat_at_ms);
CREATE INDEX fleet_hosts_name ON fleet_hosts (name);

-- The queue: work any host with room may claim.
CREATE TABLE fleet_jobs (
    id TEXT PRIMARY KEY,
    -- scenario, matrix_leg, converge or recipe_prove
    kind TEXT NOT NULL,
    -- what to run, JSON (a scenario carries its folder's files)
    payload TEXT NOT NULL,
    -- nodes the work boots at once: a host claims it only with that many free
    nodes INTEGER NOT NULL,
    submitter TEXT NOT NULL,
    -- queued, running, done, failed, cancelled or lost
    state TEXT NOT NULL,
    -- the host (fleet_hosts.id, and its name) of the current attempt
    host_id TEXT,
    host TEXT,
    -- how many times it was claimed, and how many times it may be
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 2,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    run_id TEXT,
    -- the run's report, JSON, once done
    result TEXT,
    exit_code INTEGER,
    error TEXT,
    submitted_at_ms BIGINT NOT NULL,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX fleet_jobs_queue ON fleet_jobs (state, submitted_at_ms);
CREATE INDEX fleet_jobs_host ON fleet_jobs (host_id, state);

-- Whose work goes first: higher first, then the oldest. A submitter without
-- a row has priority 0.
CREATE TABLE fleet_submitters (
    submitter TEXT PRIMARY KEY,
    priority INTEGER NOT NULL
);

-- Which host carries out a run and holds a cluster (NULL: not a fleet host).
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE clusters ADD COLUMN host TEXT;

CREATE INDEX runs_host ON runs (host, outcome);
CREATE INDEX clusters_host ON clusters (host, destroyed_at_ms);
