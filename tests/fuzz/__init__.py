"""Property-based fuzzing of every input the dispatcher takes from outside (issue 8, item 5).

Each test is bounded (`max_examples`, no deadline surprises) to stay within about 20 s,
and prints how many cases it ran: `pytest tests/fuzz -s` shows the counts.
"""
