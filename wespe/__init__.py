"""wespe: WESPE weak supervision for photo enhancement on PyTorch Lightning, and its losses."""

from wespe.module import WESPE, EnhancerModule, SupervisedEnhancer
from wespe.networks import Discriminator, Generator

__all__ = ["WESPE", "Discriminator", "EnhancerModule", "Generator", "SupervisedEnhancer"]
__version__ = "0.1.0"
