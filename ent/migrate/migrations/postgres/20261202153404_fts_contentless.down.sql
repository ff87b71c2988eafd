-- Hand-written migration (postgres): nothing to undo.
SELECT 1;
