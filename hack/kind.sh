#!/usr/bin/env bash
# modelship on kind, for Docker users: the steps of README.md's "Install on a cluster",
# which tests/integration/test_helm_install.py takes against the local control plane.
# Needs docker, kind, kubectl and helm (v3); run from a modelship checkout.
#   hack/kind.sh            # cluster "modelship"; KIND_CLUSTER=name to change it
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-modelship}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)

# 1. A cluster.
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster"
kubectl config use-context "kind-$cluster"

# 2. The three images (docs/images.md), loaded into the cluster's node.
for image in operator:operator/Containerfile trainer:trainer/Containerfile \
             triton:hack/images/triton/Containerfile; do
  name=localhost/modelship/${image%%:*}:$version
  docker build -f "${image#*:}" --build-arg BASE=python:3.11-slim-bookworm \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" -t "$name" .
  kind load docker-image "$name" --name "$cluster"
done

# 3. The chart: CRDs, the operator under its own ServiceAccount and RBAC (cluster-wide).
helm status modelship -n modelship >/dev/null 2>&1 ||
  helm install modelship charts/modelship -n modelship --create-namespace \
    --set image.repository=localhost/modelship/operator
kubectl -n modelship rollout status deployment/modelship-operator --timeout=180s

# 4. The local samples, with the images just loaded: a CPU TrainingRun, then the
#    ModelDeployment that serves the version it publishes.
kubectl patch --local -o yaml --type=merge -f crds/samples/trainingrun-cpu.yaml \
  -p "{\"spec\":{\"trainer\":{\"image\":\"localhost/modelship/trainer:$version\"}}}" |
  kubectl apply -f -
kubectl patch --local -o yaml --type=merge -f crds/samples/modeldeployment-local.yaml \
  -p "{\"spec\":{\"runtime\":{\"image\":\"localhost/modelship/triton:$version\"}}}" |
  kubectl apply -f -
echo "watch them: kubectl get tr,md -w   (remove all: kind delete cluster --name $cluster)"
