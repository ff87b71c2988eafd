-- Nothing to undo: canonical JIDs are valid keys for the previous version.
SELECT 1;
