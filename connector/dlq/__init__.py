"""Dead-letter tools: `aep-connector dlq inspect` and `aep-connector dlq replay`.

    letter.py     one dead letter: the original record and the worker's context headers
    selection.py  which letters a command applies to (stage, class, topic, time, offsets)
    summary.py    counts and sample reasons for `inspect`
    reader.py     reading a bounded span of the dead-letter topic (no group membership)
    replay.py     re-producing letters transactionally, committing the group's progress with them

docs/dead-letters.md explains the headers, both commands and the replay guarantees.
"""
