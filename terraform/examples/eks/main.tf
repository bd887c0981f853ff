# Magnetar on EKS: a VPC, the cluster with broker and bookie node groups, the
# offload bucket, the brokers' IRSA role limited to that bucket, and the chart.

provider "aws" {
  region = var.region
  default_tags {
    tags = var.tags
  }
}

data "aws_caller_identity" "current" {}

locals {
  namespace      = "magnetar"
  broker_account = "magnetar-broker"
  bucket         = coalesce(var.offload_bucket, "${var.name}-offload-${data.aws_caller_identity.current.account_id}")
}

module "vpc" {
  source = "../../modules/vpc"
  name   = var.name
}

module "eks" {
  source              = "../../modules/eks"
  name                = var.name
  kubernetes_version  = var.kubernetes_version
  subnet_ids          = module.vpc.private_subnet_ids
  public_access_cidrs = var.admin_cidrs
}

module "offload_bucket" {
  source      = "../../modules/offload-bucket"
  bucket_name = local.bucket
}

module "broker_irsa" {
  source            = "../../modules/broker-irsa"
  name              = "${var.name}-broker"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  namespace         = local.namespace
  service_account   = local.broker_account
  bucket_arn        = module.offload_bucket.bucket_arn
  kms_key_arn       = module.offload_bucket.kms_key_arn
}

# The helm and kubernetes providers reach the new cluster with a token from
# `aws eks get-token` (the AWS CLI must be installed where Terraform runs).
provider "kubernetes" {
  host                   = module.eks.endpoint
  cluster_ca_certificate = base64decode(module.eks.certificate_authority_data)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes {
    host                   = module.eks.endpoint
    cluster_ca_certificate = base64decode(module.eks.certificate_authority_data)
    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
    }
  }
}

module "magnetar" {
  source                 = "../../modules/magnetar-release"
  namespace              = local.namespace
  cluster_name           = var.name
  image_registry         = var.image_registry
  image_tag              = var.image_tag
  broker_service_account = local.broker_account
  broker_role_arn        = module.broker_irsa.role_arn
  offload = {
    bucket = module.offload_bucket.bucket_name
    region = var.region
  }
  broker_node_selector = module.eks.broker_pool
  bookie_node_selector = module.eks.bookie_pool.node_selector
  bookie_toleration    = module.eks.bookie_pool.toleration
  auth_secret_name     = var.auth_secret_name
  client_cidrs         = [module.vpc.cidr]

  # Volumes need the EBS CSI driver, and pods the CNI.
  depends_on = [module.eks]
}
