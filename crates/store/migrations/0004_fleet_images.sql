-- The images a fleet job boots (JSON array of names; NULL: not known), so a
-- host that lacks one leaves the job to a host that holds them all.
ALTER TABLE fleet_jobs ADD COLUMN images TEXT;
