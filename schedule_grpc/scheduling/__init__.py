"""The scheduling engine: on the elected leader, fires every enabled task at its instants.

Only this package imports APScheduler; the word "job" (APScheduler's) stays inside it.
"""
