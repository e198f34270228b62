-- Every run rehearse carries out, as the dashboard, `rehearse runs` and
-- /metrics read them. Plain SQL that SQLite and PostgreSQL both accept: no
-- AUTOINCREMENT, no engine-only types; times are Unix milliseconds, JSON is
-- stored as TEXT, child rows are ordered by an explicit `seq`.

-- A scenario run or a converge run. A converge run's iterations and proof are
-- scenario runs of their own, pointing at it through parent_id.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    -- scenario or converge
    kind TEXT NOT NULL,
    -- the scenario's or the task's name, and its file
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    parent_id TEXT REFERENCES runs (id) ON DELETE CASCADE,
    -- a child run's part in its parent: "iteration 2", "proof"
    role TEXT,
    started_at_ms BIGINT NOT NULL,
    -- bumped by every write that concerns the run: what live views poll
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    -- running; then passed, failed or error (scenario);
    -- converged, budget_exhausted, no_rule_applies or error (converge)
    outcome TEXT NOT NULL,
    summary TEXT,
    cluster_id TEXT,
    -- the run's whole report, as JSON, once it ended
    report TEXT,
    report_path TEXT,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION
);

CREATE INDEX runs_started ON runs (started_at_ms);
CREATE INDEX runs_updated ON runs (updated_at_ms);
CREATE INDEX runs_parent ON runs (parent_id);

-- A scenario run's steps, first pass then idempotence pass, as they end.
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    -- first or second (the idempotence pass)
    pass TEXT NOT NULL,
    name TEXT NOT NULL,
    -- shell, ansible or copy
    kind TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    -- the nodes the step ran on, comma-separated
    nodes TEXT NOT NULL,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    -- each node's output (or Ansible's tasks), as the report holds it: JSON
    detail TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- A scenario run's check results: the checks, then after a reboot.
CREATE TABLE checks (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    -- checks or after_reboot
    phase TEXT NOT NULL,
    node TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- passed, failed or skipped
    status TEXT NOT NULL,
    -- JSON
    expected TEXT NOT NULL,
    actual TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- What a converge run adds to its row in runs.
CREATE TABLE converge_runs (
    run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    goal TEXT NOT NULL,
    language TEXT NOT NULL,
    -- provider/model, or NULL in rules-only mode
    model TEXT,
    converged BOOLEAN NOT NULL DEFAULT FALSE,
    script TEXT,
    distilled TEXT,
    proof_outcome TEXT
);

CREATE TABLE iterations (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    -- where the code came from: task, model, rules, model-retry
    origin TEXT NOT NULL,
    code TEXT NOT NULL,
    -- the scenario run's outcome on a fresh cluster
    outcome TEXT NOT NULL,
    scenario_run_id TEXT NOT NULL,
    failure TEXT,
    -- rules, retry or troubleshoot, and why
    recovery_path TEXT,
    reason TEXT,
    fix_rule TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, number)
);

CREATE TABLE llm_calls (
    run_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    -- the messages sent, as JSON
    prompt TEXT NOT NULL,
    response TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION,
    PRIMARY KEY (run_id, iteration, seq),
    FOREIGN KEY (run_id, iteration) REFERENCES iterations (run_id, number) ON DELETE CASCADE
);

-- Troubleshooting commands run on the live failed cluster.
CREATE TABLE commands (
    run_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    command TEXT NOT NULL,
    why TEXT NOT NULL,
    exit_code INTEGER,
    output TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    refused TEXT,
    PRIMARY KEY (run_id, iteration, seq),
    FOREIGN KEY (run_id, iteration) REFERENCES iterations (run_id, number) ON DELETE CASCADE
);

-- The checks as an iteration ended (after troubleshooting, when it did).
CREATE TABLE iteration_checks (
    run_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    phase TEXT NOT NULL,
    node TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    expected TEXT NOT NULL,
    actual TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, iteration, seq),
    FOREIGN KEY (run_id, iteration) REFERENCES iterations (run_id, number) ON DELETE CASCADE
);

-- Every cluster started, for history and the boot-time histogram.
CREATE TABLE clusters (
    id TEXT PRIMARY KEY,
    -- the run it was started for, if any (not a reference: runs are pruned)
    run_id TEXT,
    source TEXT NOT NULL,
    backend TEXT NOT NULL,
    nodes INTEGER NOT NULL,
    -- name=ip, comma-separated
    addresses TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    boot_ms BIGINT NOT NULL,
    destroyed_at_ms BIGINT
);

CREATE INDEX clusters_created ON clusters (created_at_ms);
