"""Data-parallel training with one DistributedDataParallel per network.

Lightning's ``ddp`` wraps the whole LightningModule in one DistributedDataParallel. A GAN step
trains only some of the module's networks, so that wrapper needs ``find_unused_parameters``: it
walks the autograd graph before every backward pass to find the networks left out, and
all-reduces the gradient buckets of all networks in every step, including the zeros of the idle
ones. :class:`PerNetworkDDPStrategy` instead wraps each trained network in its own
DistributedDataParallel, as OpenMMLab does for its GANs, and leaves the LightningModule itself
unwrapped: each optimizer step all-reduces exactly its networks' gradients, with no search.

The module says which networks to wrap (``TRAINED_NETWORKS``) and runs its training forward
passes through :meth:`wespe.module.EnhancerModule.trained`. In use::

    trainer:
      strategy:
        class_path: wespe.strategies.PerNetworkDDPStrategy
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.overrides.distributed import _sync_module_states
from pytorch_lightning.strategies import DDPStrategy

__all__ = ["PerNetworkDDPStrategy"]


class PerNetworkDDPStrategy(DDPStrategy):
    """:class:`~pytorch_lightning.strategies.DDPStrategy` that wraps each trained network of an
    :class:`~wespe.module.EnhancerModule` in its own DistributedDataParallel.

    Takes DDPStrategy's arguments (``start_method``, ``process_group_backend``, ``timeout``, and
    DistributedDataParallel keyword arguments such as ``broadcast_buffers``). Not supported:
    DDP communication hooks and post-local-SGD, which Lightning applies to a whole-module
    wrapper, and gradient accumulation without synchronisation (every backward pass
    all-reduces).
    """

    def configure_ddp(self) -> None:
        module = self.lightning_module
        if not hasattr(module, "distribute_networks"):
            raise TypeError(
                f"{type(self).__name__} wraps the networks named by a module's TRAINED_NETWORKS "
                f"and needs a wespe EnhancerModule; {type(module).__name__} is not one. Use "
                "strategy: ddp (or ddp_find_unused_parameters_true) for other modules."
            )
        if self._ddp_comm_hook is not None or self._ddp_comm_state is not None:
            raise ValueError(
                f"{type(self).__name__} does not support DDP communication hooks; remove "
                "ddp_comm_hook/ddp_comm_state or use strategy: ddp"
            )
        # The whole-module wrapper would broadcast every weight and buffer from rank 0; the
        # per-network wrappers broadcast only their networks, so copy the rest (the generator's
        # moving average, anything not trained) here, for ranks that built it differently.
        _sync_module_states(module)
        module.distribute_networks(self._setup_model)

    def teardown(self) -> None:
        module = self.lightning_module
        if isinstance(module, pl.LightningModule) and hasattr(module, "distribute_networks"):
            module.distribute_networks(None)
        super().teardown()
