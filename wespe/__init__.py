"""wespe: WESPE weak supervision for photo enhancement on PyTorch Lightning, and its losses."""

from wespe.module import WESPE
from wespe.networks import Discriminator, Generator

__all__ = ["WESPE", "Discriminator", "Generator"]
__version__ = "0.1.0"
