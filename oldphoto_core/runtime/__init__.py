"""How the networks run: one walker of their layer stacks with interchangeable back ends
(whole maps in place, or exact strips), the convolution algorithms, numerics and progress.

Nothing here imports the networks, the stages or anything above them: the networks hand
their stacks to :func:`~oldphoto_core.runtime.walk.run_stack`.
"""
