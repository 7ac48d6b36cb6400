"""Where a private model's randomness comes from.

DP's guarantee assumes the noise (and DP-SGD's Poisson sample) cannot be recomputed. A seed an
attacker can read or guess (a model's ``seed`` is stored in its config, and is 0 by default)
lets them draw the same noise and subtract it from what was released. So the randomness of a
private release comes from the OS's entropy and is never stored, unless ``noise_seed`` is given
on purpose (tests, audits), which the model's privacy record then says.
"""

from __future__ import annotations

import secrets

NOISE_SECRET = "secret: drawn from OS entropy, not stored"
NOISE_GIVEN = "from noise_seed: reproducible, so not private against anyone holding noise_seed"


def noise_seed_or_secret(noise_seed: int | None) -> tuple[int, str]:
    """The seed of a private mechanism's randomness, and how it was chosen."""
    if noise_seed is None:
        return secrets.randbits(63), NOISE_SECRET
    return int(noise_seed), NOISE_GIVEN
