"""The Minikube testbed: configuration (`config`), bring-up (`cluster`), the Kubernetes API (`kube`), the
`MinikubeCluster` backend (`backend`), Prometheus reads and scrape config (`metrics`, `prometheus`) and
power-curve calibration (`calibrate`)."""
