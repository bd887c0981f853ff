#!/usr/bin/env python3
"""Writes helm/magnetar/values.schema.json (JSON Schema draft-07, which Helm
checks values against at install, upgrade, template and lint).

Kept as a script because many components share shapes (resources, probes,
persistence). Run it after changing values.yaml's shape:
    python3 helm/tools/make_schema.py
(helm/tests checks that the committed file is this script's output.)
"""

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parents[1] / "magnetar" / "values.schema.json"


def obj(props, required=None, extra=False, **kw):
    o = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        o["required"] = required
    o.update(kw)
    return o


STR = {"type": "string"}
BOOL = {"type": "boolean"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
NAT = {"type": "integer", "minimum": 1}
NON_NEG = {"type": "integer", "minimum": 0}
# Kubernetes quantities: "500m", "2", "1Gi", or plain numbers.
QUANTITY = {"type": ["string", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"}
SIZE = {"type": "string", "pattern": r"^[0-9]+(Ki|Mi|Gi|Ti|Pi)$", "description": "a volume size, e.g. 50Gi"}
ANY_MAP = {"type": "object"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
LIST = {"type": "array"}
# Names the init Job passes to the shell and the admin API: Pulsar's rules.
NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.=-]+$", "minLength": 1}
ROLE = {"type": "string", "pattern": r"^[A-Za-z0-9_.@:=+-]+$", "minLength": 1}
ENV = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}}},
}

IMAGE = obj(
    {
        "repository": {"type": "string", "minLength": 1},
        "tag": STR,
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    },
    ["repository", "tag", "pullPolicy"],
)

RESOURCES = obj(
    {
        "requests": obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}, ["cpu", "memory"]),
        "limits": obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}, ["cpu", "memory"]),
    },
    ["requests", "limits"],
    description="Requests and limits are both required: every container runs bounded.",
)

PROBE = obj(
    {
        "initialDelaySeconds": NON_NEG,
        "periodSeconds": NAT,
        "timeoutSeconds": NAT,
        "failureThreshold": NAT,
        "successThreshold": NAT,
    }
)

VOLUME = obj({"size": SIZE, "storageClass": STR}, ["size", "storageClass"])
PDB = obj({"maxUnavailable": NAT}, ["maxUnavailable"])


# TLS: one Secret (tls.crt, tls.key, ca.crt) for every component.
FALSE_WITHOUT_TLS = {"const": False, "description": "needs tls.enabled"}
TLS = obj(
    {
        "enabled": BOOL,
        "secretName": {
            "type": "string",
            "description": "A Secret with tls.crt, tls.key and ca.crt (kubernetes.io/tls plus the CA, as cert-manager makes).",
        },
        "broker": obj(
            {
                "pulsarPort": PORT,
                "httpsPort": PORT,
                "disablePlain": {
                    "type": "boolean",
                    "description": "Turns the plain 6650/8080 listeners off; probes then use HTTPS, so it cannot go with requireClientCert. The certificate must also name every broker pod's IP.",
                },
                "requireClientCert": {
                    "type": "boolean",
                    "description": "Refuse TLS clients without a certificate from ca.crt (the kubelet's probes present none: not with disablePlain).",
                },
            },
            ["pulsarPort", "httpsPort", "disablePlain"],
            **{
                # The kubelet's HTTPS probes present no client certificate.
                "if": {"properties": {"disablePlain": {"const": True}}, "required": ["disablePlain"]},
                "then": {
                    "properties": {
                        "requireClientCert": {
                            "const": False,
                            "description": "with disablePlain the probes use HTTPS and present no client certificate",
                        }
                    }
                },
            },
        ),
        "clientAuth": {"type": "boolean", "description": "Client certificates authenticate (role = subject CN); needs auth.enabled."},
        "internal": obj({"enabled": BOOL, "mutual": BOOL}, ["enabled"]),
    },
    ["enabled"],
    **{
        "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
        "then": {
            "required": ["secretName", "broker"],
            "properties": {"secretName": {"minLength": 1}},
        },
        # With TLS off nothing of it may be asked for: it would silently stay plain.
        "else": {
            "properties": {
                "broker": {"properties": {"disablePlain": FALSE_WITHOUT_TLS, "requireClientCert": FALSE_WITHOUT_TLS}},
                "clientAuth": FALSE_WITHOUT_TLS,
                "internal": {"properties": {"enabled": FALSE_WITHOUT_TLS, "mutual": FALSE_WITHOUT_TLS}},
            }
        },
    },
)


def component(props, required):
    common = {
        "resources": RESOURCES,
        "pdb": PDB,
        "antiAffinityTopologyKey": {"type": "string", "minLength": 1},
        "nodeSelector": STR_MAP,
        "tolerations": LIST,
        "podAnnotations": STR_MAP,
        "podLabels": STR_MAP,
        "extraEnv": ENV,
        "terminationGracePeriodSeconds": NON_NEG,
    }
    common.update(props)
    return obj(common, required + ["resources", "pdb", "probes", "ports", "replicas"])


SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Magnetar Helm chart values",
    "type": "object",
    "additionalProperties": False,
    "required": ["clusterName", "images", "meta", "bookie", "broker"],
    "properties": {
        "global": ANY_MAP,
        "clusterName": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$", "minLength": 1},
        "clusterDomain": {"type": "string", "minLength": 1},
        "images": obj(
            {"meta": IMAGE, "bookie": IMAGE, "broker": IMAGE, "cli": IMAGE, "pullSecrets": LIST},
            ["meta", "bookie", "broker", "cli"],
        ),
        "logFormat": {"enum": ["json", "pretty"]},
        "otlpEndpoint": STR,
        "podSecurityContext": obj(
            {"runAsNonRoot": {"const": True}, "runAsUser": NAT},
            ["runAsNonRoot"],
            extra=True,
            description="runAsNonRoot must stay true; the images run as a non-root user.",
        ),
        "containerSecurityContext": obj(
            {
                "runAsNonRoot": {"const": True},
                "runAsUser": NAT,
                "allowPrivilegeEscalation": {"const": False},
                "privileged": {"const": False},
            },
            ["runAsNonRoot", "allowPrivilegeEscalation"],
            extra=True,
        ),
        "serviceAccount": obj(
            {
                "broker": obj({"create": BOOL, "name": STR, "annotations": STR_MAP}, ["create"]),
                "default": obj({"create": BOOL, "name": STR, "annotations": STR_MAP}, ["create"]),
            }
        ),
        "meta": component(
            {
                "replicas": {
                    "type": "integer",
                    "enum": [3, 5, 7],
                    "description": "Raft voters: an odd number, 3, 5 or 7.",
                },
                "ports": obj({"grpc": PORT, "http": PORT}, ["grpc", "http"]),
                "heartbeatMs": NAT,
                "electionTimeoutMs": NAT,
                "quorumTimeoutMs": NAT,
                "snapshotEvery": NAT,
                "workerThreads": {"type": "integer", "minimum": 1, "maximum": 1024},
                "persistence": VOLUME,
                "probes": obj({"readiness": PROBE, "liveness": PROBE}, ["readiness", "liveness"]),
            },
            ["persistence"],
        ),
        "bookie": component(
            {
                "replicas": {"type": "integer", "minimum": 1},
                "ports": obj({"bookie": PORT, "http": PORT}, ["bookie", "http"]),
                "persistence": obj({"journal": VOLUME, "ledgers": VOLUME}, ["journal", "ledgers"]),
                "minFreeBytes": NON_NEG,
                "autorecovery": BOOL,
                "auditorGraceSeconds": NAT,
                "journalSync": BOOL,
                "rack": {"type": "string", "minLength": 1},
                "probes": obj({"readiness": PROBE, "liveness": PROBE}, ["readiness", "liveness"]),
            },
            ["persistence"],
        ),
        "broker": component(
            {
                "replicas": NAT,
                "ports": obj({"pulsar": PORT, "http": PORT}, ["pulsar", "http"]),
                "ensembleSize": NAT,
                "writeQuorum": NAT,
                "ackQuorum": NAT,
                "maxMessageSize": NAT,
                "leaseTtlSeconds": NAT,
                "defaultBundles": {"type": "integer", "minimum": 1, "maximum": 4096},
                "maxTopicMetrics": NON_NEG,
                "advertisedListeners": STR,
                "terminationGracePeriodSeconds": {"type": "integer", "minimum": 30},
                "preStopSleepSeconds": NON_NEG,
                "probes": obj({"readiness": PROBE, "liveness": PROBE, "startup": PROBE}, ["readiness", "liveness", "startup"]),
                "autoscaling": obj(
                    {
                        "enabled": BOOL,
                        "minReplicas": NAT,
                        "maxReplicas": NAT,
                        "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    ["enabled"],
                ),
                "service": obj(
                    {
                        "type": {"enum": ["ClusterIP", "LoadBalancer", "NodePort"]},
                        "annotations": STR_MAP,
                        "loadBalancerSourceRanges": {"type": "array", "items": STR},
                    },
                    ["type"],
                ),
            },
            ["ensembleSize", "writeQuorum", "ackQuorum"],
        ),
        "offload": obj(
            {
                "enabled": BOOL,
                # Pulsar's driver names, as libs/offload parses them. (Its "filesystem"
                # driver needs a directory every broker shares; not offered here.)
                "driver": {"enum": ["aws-s3", "S3", "s3", "google-cloud-storage", "gcs", "azureblob"]},
                "bucket": STR,
                "region": STR,
                "endpoint": {"type": "string", "pattern": r"^(https?://.+)?$"},
                "credentialsSecret": STR,
            },
            ["enabled", "driver"],
        ),
        "auth": obj(
            {
                "enabled": BOOL,
                "secretName": STR,
                "keyType": {"enum": ["secret", "public"]},
                "secretKeyKey": {"type": "string", "minLength": 1},
                "publicKeyKey": {"type": "string", "minLength": 1},
                "brokerClientTokenKey": STR,
                "superuserRoles": {"type": "array", "items": ROLE},
            },
            ["enabled", "keyType"],
            **{
                "if": {"properties": {"enabled": {"const": True}}},
                "then": {
                    "required": ["secretName", "superuserRoles"],
                    "properties": {
                        "secretName": {"minLength": 1},
                        "superuserRoles": {"minItems": 1},
                    },
                },
            },
        ),
        "tls": TLS,
        "initialize": obj(
            {
                "enabled": BOOL,
                "tenants": {
                    "type": "array",
                    "items": obj(
                        {
                            "name": NAME,
                            "adminRoles": {"type": "array", "items": ROLE},
                            "namespaces": {
                                "type": "array",
                                "items": obj(
                                    {"name": NAME, "bundles": {"type": "integer", "minimum": 1, "maximum": 4096}},
                                    ["name"],
                                ),
                            },
                        },
                        ["name"],
                    ),
                },
                "waitSeconds": NAT,
                "backoffLimit": NON_NEG,
                "activeDeadlineSeconds": NAT,
                "ttlSecondsAfterFinished": NON_NEG,
                "resources": RESOURCES,
            },
            ["enabled"],
        ),
        "networkPolicy": obj({"enabled": BOOL, "extraFrom": LIST}, ["enabled"]),
        "metrics": obj(
            {
                "podAnnotations": BOOL,
                "serviceMonitor": obj(
                    {
                        "enabled": BOOL,
                        "interval": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                        "scrapeTimeout": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                        "labels": STR_MAP,
                    },
                    ["enabled"],
                ),
                "dashboard": obj({"enabled": BOOL, "labels": STR_MAP, "annotations": STR_MAP}, ["enabled"]),
            }
        ),
    },
}


def render():
    return json.dumps(SCHEMA, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit("usage: make_schema.py (no arguments)")
    OUT.write_text(render())
    print(f"wrote {OUT}")
