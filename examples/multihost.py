"""One KL estimate split over the devices of several processes (hosts), with JAX's runtime.

Run one copy per process; every process passes the same arguments and gets the same
result, which equals the single-process estimate for the same key (to float rounding):

    # two processes on this machine (CPU collectives over 127.0.0.1):
    python examples/multihost.py --process-id 0 --num-processes 2 &
    python examples/multihost.py --process-id 1 --num-processes 2

On a cluster, give every process the coordinator's address (``--coordinator
host0:1234``) and its own ``--process-id``; on SLURM or Cloud TPU
``jax.distributed.initialize()`` finds them itself. The mesh spans ``jax.devices()``,
the devices of *all* processes; each process computes the points of its own devices
and XLA all-reduces the per-component sums.

``--quick`` uses fewer samples (a smoke run); ``--check`` also computes the
single-process estimate locally and prints both.
"""

from __future__ import annotations

import argparse


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--process-id", type=int, default=0)
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--coordinator", default="127.0.0.1:12355")
    ap.add_argument("--local-devices", type=int, default=2, help="CPU devices per process")
    ap.add_argument("--num-samples", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", help="unused: this example writes no files")
    args = ap.parse_args(argv)

    import os

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.local_devices}"
        ).strip()
    import pathlib
    import sys

    # this checkout's gmmjax, also when another one is installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=120,
        )
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh

    import gmmjax

    n = 20_000 if args.quick else args.num_samples
    # the same mixtures in every process (built from fixed numbers, not from devices)
    rng = np.random.default_rng(0)
    k, d = 4, 3
    p = gmmjax.GaussianMixture(
        logits=jnp.asarray(rng.normal(size=k), jnp.float32),
        locs=jnp.asarray(rng.normal(size=(k, d)), jnp.float32),
        scale_tril=jnp.asarray(np.broadcast_to(np.eye(d), (k, d, d)), jnp.float32),
    )
    q = gmmjax.GaussianMixture(
        logits=jnp.asarray(rng.normal(size=k), jnp.float32),
        locs=jnp.asarray(rng.normal(size=(k, d)), jnp.float32),
        scale_tril=jnp.asarray(np.broadcast_to(0.8 * np.eye(d), (k, d, d)), jnp.float32),
    )
    mesh = Mesh(np.array(jax.devices()), ("samples",))
    key = jax.random.key(42)
    est = gmmjax.kl_estimate(p, q, key, n, mesh=mesh)
    value, stderr = float(est.value), float(est.stderr)
    print(
        f"process {jax.process_index()}/{jax.process_count()}: {len(jax.devices())} devices, "
        f"KL = {value:.6f} ± {stderr:.6f}",
        flush=True,
    )
    if args.check:
        local = gmmjax.kl_estimate(p, q, key, n)
        print(f"SINGLE {float(local.value):.7g} {float(local.stderr):.7g}", flush=True)
    print(f"JOINT {value:.7g} {stderr:.7g}", flush=True)
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
