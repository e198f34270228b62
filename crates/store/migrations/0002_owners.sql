-- Which process carries out a run, so a run whose process died (killed,
-- crashed, the host rebooted) becomes "aborted" instead of "running" forever:
-- machine id / boot id / pid / process start time, written when it starts.
ALTER TABLE runs ADD COLUMN owner TEXT;

CREATE INDEX runs_outcome ON runs (outcome);

-- Why a cluster went away when gc or its reaper removed it (its run died, it
-- expired, ...); NULL when someone destroyed it.
ALTER TABLE clusters ADD COLUMN destroyed_reason TEXT;
