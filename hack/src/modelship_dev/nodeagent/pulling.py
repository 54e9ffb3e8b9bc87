"""Making a container's image present on the node, the kubelet's EnsureImageExists.

There is no registry: the local image store (modelship_dev.imagestore, filled by
`make images`) is both where images come from and what the node holds, much as `kind load`
puts images on a kind node. "Pulling" is resolving the reference in the store and unpacking
layers the node has not unpacked yet. `imagePullPolicy`:

- IfNotPresent and Always: the reference is looked up in the store at every container start
  (so an image rebuilt by `make images` is what the next start runs); a reference the store
  lacks is ErrImagePull, then ImagePullBackOff while the agent waits to try again. For
  Always there is no registry to ask for a newer digest: the store's is the newest.
- Never: a reference the store lacks is ErrImageNeverPull; the agent keeps checking.

Host binaries are never a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelship_dev import imagestore
from modelship_dev.nodeagent import rootfs


class PullError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Pulled:
    image: imagestore.Image
    lowers: list[Path]  # overlayfs lowerdirs, top layer first

    @property
    def image_id(self) -> str:
        """What a kubelet reports as imageID: the repository at the manifest's digest."""
        name = self.image.ref.split("@", 1)[0]
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        return f"{repository}@{self.image.manifest_digest}"


def policy(container: dict[str, Any]) -> str:
    """The container's pull policy, defaulted as the API server defaults it."""
    given = container.get("imagePullPolicy")
    if given:
        return str(given)
    image = str(container.get("image", ""))
    tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
    return "Always" if not tagged or image.endswith(":latest") else "IfNotPresent"


def ensure(container: dict[str, Any]) -> Pulled:
    """The container's image, unpacked (blocking: run it in a thread)."""
    ref = str(container.get("image") or "")
    if not ref:
        raise PullError("InvalidImageName", "the container names no image")
    try:
        image = imagestore.resolve(ref)
    except LookupError:
        store = imagestore.store_dir()
        if policy(container) == "Never":
            raise PullError("ErrImageNeverPull",
                            f'Container image "{ref}" is not present with pull policy of '
                            f"Never (the local image store {store} lacks it; make images "
                            "builds modelship's images)") from None
        raise PullError("ErrImagePull",
                        f'failed to pull image "{ref}": not in the local image store {store} '
                        "and the local node has no registry (make images builds modelship's "
                        "images)") from None
    except (OSError, ValueError, KeyError) as err:
        raise PullError("ErrImagePull", f'failed to pull image "{ref}": {err}') from None
    try:
        return Pulled(image, rootfs.unpack_image(image))
    except rootfs.UnpackError as err:
        raise PullError("ErrImagePull", f'failed to unpack image "{ref}": {err}') from None
