"""End-to-end tests against a real Kubernetes control plane started by the tests.

The binaries come from ``hack/control-plane.sh ensure`` (built from Go modules on first use and
cached outside the repository); :mod:`.cluster` starts and stops the control plane.
"""
