-- Placeholder so that 0003 applies on the ports branch alone; the merge
-- replaces it with the real 0002 of another branch.
SELECT 1;
