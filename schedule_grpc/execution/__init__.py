"""Running executions: the executor, its two lanes, worker processes, the decision after an attempt, alerts."""
