"""The product's entry points: the ``raddiff`` command line, the chat app and the trace viewer.

They sit on top of every other layer (``graphs`` runs the agent, ``evals`` holds the simulator and benchmarks);
nothing below imports them.
"""
