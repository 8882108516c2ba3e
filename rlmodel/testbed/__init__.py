"""The testbeds: configuration (`config`), Minikube bring-up and any-cluster apply (`cluster`), the Kubernetes
API (`kube`, `selector`), the `KubernetesCluster` and `MinikubeCluster` backends (`backend`), Prometheus reads
and scrape config (`metrics`, `prometheus`), power sources (`power_sources`: host monitor, Kepler,
Scaphandre) and power-curve calibration (`calibrate`)."""
