"""What running pods from images costs on the local node.

1. First start of each image on a machine: unpacking its layers from the local store into
   the layer cache (digest checked while it streams into tar). Measured into a scratch
   cache, so the real one (~/.cache/modelship/images/layers) is untouched; needs about as
   much free disk as the images' uncompressed size (~6.5 GB with the trainer).
2. A warm start: a pod of an image whose layers are unpacked, from `kubectl apply` to its
   container running, and to its exit (`true`: overlay root, mounts, user, exec), on a
   local cluster with the node agent.

    .venv/bin/python hack/bench/images_run.py [--images operator,triton,trainer] [--pods 5]

Needs root (mount and network namespaces, overlayfs) and `make images` done.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from modelship_dev import images, imagestore, tools
from modelship_dev.cluster import LocalCluster
from modelship_dev.nodeagent import rootfs
from modelship_dev.workload import NODE, PLACEMENT


def unpack_cold(names: list[str]) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="modelship-bench-layers-"))
    store = imagestore.store_dir()
    saved = {k: os.environ.get(k) for k in ("MODELSHIP_CACHE", imagestore.STORE_ENV)}
    os.environ[imagestore.STORE_ENV] = str(store)  # the real store, a scratch layer cache
    os.environ["MODELSHIP_CACHE"] = str(scratch)
    try:
        for name in names:
            image = imagestore.resolve(images.ref(name))
            packed = sum(layer.size for layer in image.layers)
            start = time.monotonic()
            rootfs.unpack_image(image)
            took = time.monotonic() - start
            print(f"first start, unpack {image.ref}: {took:.1f} s for {len(image.layers)} "
                  f"layers, {packed / 1e6:.0f} MB compressed ({packed / 1e6 / took:.0f} MB/s)")
            shutil.rmtree(rootfs.layers_dir())  # the next image's shared base counts again
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(scratch, ignore_errors=True)


def pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {**PLACEMENT, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": images.ref("operator"),
                                     "command": ["true"]}]}}


def warm_starts(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-images-"))
    cluster = LocalCluster(work / "cluster", log=lambda _m: None)
    running: list[float] = []
    done: list[float] = []
    try:
        cluster.up()
        cluster.start_node_agent(NODE)
        for i in range(count):
            name = f"warm-{i}"
            start = time.monotonic()
            cluster.kubectl("apply", "-f", "-", input_text=json.dumps(pod(name)))
            seen_running = None
            deadline = start + 120
            while time.monotonic() < deadline:
                status = json.loads(cluster.kubectl("get", "pod", name, "-o", "json").stdout
                                    ).get("status", {})
                state = (status.get("containerStatuses") or [{}])[0].get("state", {})
                if seen_running is None and ("running" in state or "terminated" in state):
                    seen_running = time.monotonic() - start
                if status.get("phase") in ("Succeeded", "Failed"):
                    assert status["phase"] == "Succeeded", status
                    assert seen_running is not None
                    running.append(seen_running)
                    done.append(time.monotonic() - start)
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"pod {name} did not finish in 120 s")
            cluster.kubectl("delete", "pod", name, "--wait=true")
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    print(f"warm start of {images.ref('operator')} ({count} pods, kubectl polling every "
          f"50 ms): apply to container started median {statistics.median(running):.2f} s, "
          f"to Succeeded median {statistics.median(done):.2f} s (max {max(done):.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="operator,triton,trainer")
    parser.add_argument("--pods", type=int, default=5)
    args = parser.parse_args()
    tools.build_all(log=lambda _m: None)
    images.build_all(log=print)
    unpack_cold([n for n in args.images.split(",") if n])
    warm_starts(args.pods)


if __name__ == "__main__":
    main()
