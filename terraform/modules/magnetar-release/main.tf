# Magnetar on an existing cluster: StorageClasses for its volumes and a Helm
# release of helm/magnetar wired to the offload bucket and the brokers' IRSA role.

locals {
  chart_path = coalesce(var.chart_path, "${path.module}/../../../helm/magnetar")
  # The chart's fullname rule (templates/_helpers.tpl: magnetar.fullname).
  fullname = strcontains(var.release_name, "magnetar") ? var.release_name : "${var.release_name}-magnetar"

  image = { for component, name in {
    meta   = "magnetar-meta"
    bookie = "magnetar-bookie"
    broker = "magnetar-broker"
    cli    = "magnetar"
    } : component => {
    repository = "${var.image_registry}/${name}"
    tag        = var.image_tag
    pullPolicy = "IfNotPresent"
  } }

  values = {
    clusterName = var.cluster_name
    images      = local.image
    serviceAccount = {
      broker = {
        create      = true
        name        = var.broker_service_account
        annotations = { "eks.amazonaws.com/role-arn" = var.broker_role_arn }
      }
    }
    meta = {
      replicas = var.meta_replicas
      persistence = {
        size         = "${var.volumes.meta_gib}Gi"
        storageClass = kubernetes_storage_class_v1.data.metadata[0].name
      }
      nodeSelector = var.broker_node_selector
    }
    bookie = {
      replicas = var.bookie_replicas
      persistence = {
        journal = {
          size         = "${var.volumes.bookie_journal_gib}Gi"
          storageClass = kubernetes_storage_class_v1.journal.metadata[0].name
        }
        ledgers = {
          size         = "${var.volumes.bookie_ledgers_gib}Gi"
          storageClass = kubernetes_storage_class_v1.data.metadata[0].name
        }
      }
      nodeSelector = var.bookie_node_selector
      tolerations  = [for t in [var.bookie_toleration] : t if t != null]
    }
    broker = {
      ensembleSize = var.quorum.ensemble
      writeQuorum  = var.quorum.write
      ackQuorum    = var.quorum.ack
      autoscaling = {
        enabled     = true
        minReplicas = var.broker_replicas.min
        maxReplicas = var.broker_replicas.max
      }
      nodeSelector = var.broker_node_selector
      service = {
        type = "LoadBalancer"
        # An internal network load balancer (the in-tree AWS cloud provider's
        # annotations: no extra controller needed). Lookups then hand clients
        # pod IPs, which the VPC CNI makes routable inside the VPC.
        annotations = {
          "service.beta.kubernetes.io/aws-load-balancer-type"     = "nlb"
          "service.beta.kubernetes.io/aws-load-balancer-internal" = "true"
        }
        loadBalancerSourceRanges = var.client_cidrs
      }
    }
    offload = {
      enabled = true
      driver  = "aws-s3"
      bucket  = var.offload.bucket
      region  = var.offload.region
    }
    auth = {
      enabled        = var.auth_secret_name != null
      secretName     = coalesce(var.auth_secret_name, "")
      keyType        = "secret"
      superuserRoles = var.superuser_roles
    }
  }
}

# gp3 volumes, encrypted, bound where the pod lands (zone-aware); the journal
# class has provisioned IOPS: every acknowledged entry is fsynced on it.
resource "kubernetes_storage_class_v1" "data" {
  metadata {
    name = "${local.fullname}-gp3"
  }
  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Retain"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  parameters = {
    type      = "gp3"
    encrypted = "true"
  }
}

resource "kubernetes_storage_class_v1" "journal" {
  metadata {
    name = "${local.fullname}-journal"
  }
  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Retain"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  parameters = {
    type       = "gp3"
    encrypted  = "true"
    iops       = tostring(var.journal_iops)
    throughput = "250"
  }
}

resource "helm_release" "magnetar" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = true
  chart            = local.chart_path
  values           = compact([yamlencode(local.values), var.extra_values])
  # Waits for every pod to be ready and the init Job to succeed: a failed
  # initialisation fails the apply.
  wait          = true
  wait_for_jobs = true
  timeout       = 1200
}

data "kubernetes_service_v1" "broker" {
  metadata {
    name      = "${local.fullname}-broker"
    namespace = var.namespace
  }
  depends_on = [helm_release.magnetar]
}

locals {
  broker_host = try(
    data.kubernetes_service_v1.broker.status[0].load_balancer[0].ingress[0].hostname,
    "${local.fullname}-broker.${var.namespace}.svc.cluster.local",
  )
}
