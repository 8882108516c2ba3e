"""The real testbed: Prometheus configuration and (later) the Minikube harness."""
