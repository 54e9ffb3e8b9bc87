"""A local node whose pods are real processes run from their images.

The agent registers a Node with the local API server and runs every pod bound to it: each pod
gets a network namespace with its own address on a bridge in the root namespace, each
container a private mount namespace whose root is its image (layers from the local image
store, overlayfs, a writable layer of its own) with the pod's volumes, and its command runs
there as a process group, as the image's user. Pulls, probes, exit codes, termination
messages and deletion behave as a kubelet's do, so controllers see real outcomes.
"""
