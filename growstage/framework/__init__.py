"""The only framework-aware code: layer adapters, graph walking, the variables module (read,
write, deferred creation, rollback), optimizer slots, runtime hooks."""
