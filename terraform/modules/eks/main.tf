# An EKS cluster for Magnetar: control plane with audit logs and envelope
# encryption of Secrets, an IAM OIDC provider for IRSA, the EBS CSI driver for
# the StatefulSets' volumes, and two managed node groups: "broker" (brokers,
# metadata voters) and "bookie" (storage-optimised, tainted for bookies).

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  pool_label = "magnetar.io/pool"
  bookie_taint = {
    key    = "magnetar.io/bookie"
    value  = "true"
    effect = "NO_SCHEDULE"
  }
  policy_prefix = "arn:${data.aws_partition.current.partition}:iam::aws:policy"
}

# ---- Control plane -------------------------------------------------------------

data "aws_iam_policy_document" "cluster_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.name}-eks-cluster"
  assume_role_policy = data.aws_iam_policy_document.cluster_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "${local.policy_prefix}/AmazonEKSClusterPolicy"
}

data "aws_iam_policy_document" "secrets_key" {
  #checkov:skip=CKV_AWS_109:A KMS key policy, not an IAM policy: the account administering its own key is AWS's default key policy; "*" there means this key.
  #checkov:skip=CKV_AWS_111:A KMS key policy: "*" is this key alone, and only the account (then IAM) and the named service are principals.
  #checkov:skip=CKV_AWS_356:A KMS key policy: its resource can only be "*" (this key).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "secrets" {
  description             = "EKS ${var.name}: envelope encryption of Kubernetes Secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.secrets_key.json
  tags                    = var.tags
}

resource "aws_cloudwatch_log_group" "cluster" {
  # EKS writes control plane logs here; created first so retention and encryption apply.
  name              = "/aws/eks/${var.name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
  tags              = var.tags
}

data "aws_iam_policy_document" "logs_key" {
  #checkov:skip=CKV_AWS_109:A KMS key policy, not an IAM policy: the account administering its own key is AWS's default key policy; "*" there means this key.
  #checkov:skip=CKV_AWS_111:A KMS key policy: "*" is this key alone, and only the account (then IAM) and the named service are principals.
  #checkov:skip=CKV_AWS_356:A KMS key policy: its resource can only be "*" (this key).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsEncrypts"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "Service"
      identifiers = ["logs.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "logs" {
  description             = "EKS ${var.name}: control plane logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.logs_key.json
  tags                    = var.tags
}

resource "aws_eks_cluster" "this" {
  #checkov:skip=CKV_AWS_39:The public endpoint stays on so Terraform's helm provider and kubectl can reach the API from outside the VPC; it only accepts var.public_access_cidrs (set it to [] for a private-only endpoint).
  name     = var.name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = length(var.public_access_cidrs) > 0
    public_access_cidrs     = length(var.public_access_cidrs) > 0 ? var.public_access_cidrs : null
  }

  access_config {
    authentication_mode = "API"
    # Whoever runs Terraform administers the cluster (the helm provider needs it).
    bootstrap_cluster_creator_admin_permissions = true
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.secrets.arn
    }
  }

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  tags                      = var.tags

  depends_on = [
    aws_iam_role_policy_attachment.cluster,
    aws_cloudwatch_log_group.cluster,
  ]
}

# ---- IRSA ----------------------------------------------------------------------

data "tls_certificate" "oidc" {
  url = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

resource "aws_iam_openid_connect_provider" "this" {
  url             = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = [data.tls_certificate.oidc.certificates[0].sha1_fingerprint]
  tags            = var.tags
}

locals {
  oidc_issuer = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

# ---- Nodes -----------------------------------------------------------------------

data "aws_iam_policy_document" "node_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.name}-eks-node"
  assume_role_policy = data.aws_iam_policy_document.node_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])
  role       = aws_iam_role.node.name
  policy_arn = "${local.policy_prefix}/${each.value}"
}

# Nodes: IMDSv2 only, one hop (pods cannot borrow the node's role through the
# instance metadata service; the brokers use IRSA), encrypted root volumes.
resource "aws_launch_template" "node" {
  for_each = {
    broker = var.broker_nodes
    bookie = var.bookie_nodes
  }
  name_prefix = "${var.name}-${each.key}-"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = each.value.disk_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-${each.key}" })
  }
  tags = var.tags
}

resource "aws_eks_node_group" "broker" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "broker"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  instance_types  = var.broker_nodes.instance_types

  scaling_config {
    min_size     = var.broker_nodes.min_size
    desired_size = var.broker_nodes.desired_size
    max_size     = var.broker_nodes.max_size
  }
  update_config {
    max_unavailable = 1
  }
  launch_template {
    id      = aws_launch_template.node["broker"].id
    version = aws_launch_template.node["broker"].latest_version
  }
  labels = { (local.pool_label) = "broker" }
  tags   = var.tags

  depends_on = [aws_iam_role_policy_attachment.node]
  lifecycle {
    # The brokers' HPA and a cluster autoscaler move desired_size.
    ignore_changes = [scaling_config[0].desired_size]
  }
}

resource "aws_eks_node_group" "bookie" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "bookie"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  instance_types  = var.bookie_nodes.instance_types

  scaling_config {
    min_size     = var.bookie_nodes.min_size
    desired_size = var.bookie_nodes.desired_size
    max_size     = var.bookie_nodes.max_size
  }
  # One bookie node at a time: the chart's bookie PDB allows one bookie down.
  update_config {
    max_unavailable = 1
  }
  launch_template {
    id      = aws_launch_template.node["bookie"].id
    version = aws_launch_template.node["bookie"].latest_version
  }
  labels = { (local.pool_label) = "bookie" }
  taint {
    key    = local.bookie_taint.key
    value  = local.bookie_taint.value
    effect = local.bookie_taint.effect
  }
  tags = var.tags

  depends_on = [aws_iam_role_policy_attachment.node]
}

# ---- Add-ons -----------------------------------------------------------------------

resource "aws_eks_addon" "vpc_cni" {
  cluster_name = aws_eks_cluster.this.name
  addon_name   = "vpc-cni"
  # Enforces the chart's NetworkPolicies.
  configuration_values = jsonencode({ enableNetworkPolicy = "true" })
  depends_on           = [aws_eks_node_group.broker]
}

resource "aws_eks_addon" "coredns" {
  cluster_name = aws_eks_cluster.this.name
  addon_name   = "coredns"
  depends_on   = [aws_eks_node_group.broker]
}

resource "aws_eks_addon" "kube_proxy" {
  cluster_name = aws_eks_cluster.this.name
  addon_name   = "kube-proxy"
}

# The EBS CSI driver provisions the meta and bookie volumes; it gets its own IRSA role.
data "aws_iam_policy_document" "ebs_csi_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.this.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:kube-system:ebs-csi-controller-sa"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ebs_csi" {
  name               = "${var.name}-ebs-csi"
  assume_role_policy = data.aws_iam_policy_document.ebs_csi_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "${local.policy_prefix}/service-role/AmazonEBSCSIDriverPolicy"
}

resource "aws_eks_addon" "ebs_csi" {
  cluster_name             = aws_eks_cluster.this.name
  addon_name               = "aws-ebs-csi-driver"
  service_account_role_arn = aws_iam_role.ebs_csi.arn
  depends_on               = [aws_eks_node_group.broker, aws_iam_role_policy_attachment.ebs_csi]
}
