"""JAX in double precision, set in one place.

Every likelihood, gradient and Hessian of nsbi is evaluated in float64. Modules that use JAX
import it from here (``from nsbi.jax_setup import jax, jnp``), so the setting is applied
before any array is created, whichever module is imported first.
"""

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

__all__ = ["jax", "jnp"]
