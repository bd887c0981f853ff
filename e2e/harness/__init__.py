"""Harness of the Docker fault campaign: the cluster and its faults
(cluster.py, faults.py) and the checker's workload (workload.py)."""
