"""A release: one model version served with one revision of the Triton pod template.

A change of the pod template (image, args, resources, placement, serving config) is a new
revision of the same model version, rolled out like a new version (the counterpart of Argo
Rollouts' pod-template-hash). Revisions are numbered per ModelDeployment: revision 0 is the
first template a version was served with and keeps the plain name `<name>-v<N>`; a later
template gets the next free number and the name `<name>-v<N>-r<R>`. The number is what
names the objects; the template hash in status says which template a number stands for.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_LABEL = re.compile(r"^(\d+)(?:-r(\d+))?$")


class Release(NamedTuple):
    version: int
    revision: int = 0

    @property
    def label(self) -> str:
        """The value of the model-version label of its Deployment and pods, and the tail of
        their names: `3`, or `3-r1` for a later template of version 3."""
        return str(self.version) if self.revision == 0 else f"{self.version}-r{self.revision}"

    def __str__(self) -> str:
        return (f"version {self.version}" if self.revision == 0
                else f"version {self.version} revision {self.revision}")


def parse_label(text: str) -> Release | None:
    """`3` -> Release(3, 0), `3-r1` -> Release(3, 1); None for anything else."""
    m = _LABEL.match(text)
    if m is None:
        return None
    return Release(int(m.group(1)), int(m.group(2) or 0))
