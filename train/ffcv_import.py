"""Import this before any ffcv module: ffcv's compiler module sets torch's thread count to 1 when
it is first imported (ffcv 1.0.2), and the trainer imports ffcv after choosing torch's threads,
so on a CPU the model trained on one core. This keeps the count torch had. (ffcv's later calls,
from each Loader, are kept away from torch by train/loaders.py.)"""
import torch

_threads = torch.get_num_threads()
import ffcv.pipeline.compiler  # noqa: E402,F401  (the import that does it)

torch.set_num_threads(_threads)
