# C-level services of fastvae._core._network that other extension modules
# cimport (re-exported by fastvae/__init__.pxd).

from fastvae._core._optim cimport fv_optimizer
from fastvae._core._step cimport fv_vae_config


# Copy the configuration of `network`, a fastvae._core._network.Network, into cfg_out
# and its optimizer (Network.set_optimizer) into opt_out; either may be NULL.
# Needs the GIL (call it once, before the nogil loop); TypeError for any
# other object. The config holds offsets, not pointers, so it serves float32
# and float64 buffers alike and stays valid after the Network is gone.
cdef int network_config(object network, fv_vae_config* cfg_out,
                        fv_optimizer* opt_out) except -1
