"""A local node whose pods are real processes.

The agent registers a Node with the local API server and runs every pod bound to it: each pod
gets a network namespace with its own address on a bridge in the root namespace, each
container a private mount namespace with the pod's volumes, and its command runs as a process
group in this project's environment. Probes, exit codes, termination messages and deletion
behave as a kubelet's do, so controllers see real outcomes.
"""
