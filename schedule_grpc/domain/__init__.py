"""The domain: tasks, executions, schedules and the rules on them. No transport, no storage."""
