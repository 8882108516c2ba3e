"""The trained model in front of a real cluster: kube-scheduler's filter semantics on Kubernetes objects
(`filter`), pod resource requests as upstream computes them (`podspec`). The live scheduler and the scoring
service build on these (issues 14 and 15; not done yet)."""
