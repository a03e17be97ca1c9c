terraform {
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

module "cluster" {
  source = "../../modules/aws-cluster"

  name                  = var.name
  replica_count         = var.replica_count
  client_count          = var.client_count
  replica_instance_type = var.replica_instance_type
  client_instance_type  = var.client_instance_type
  ssh_public_key        = var.ssh_public_key
  ssh_cidr              = var.ssh_cidr
  availability_zones    = var.availability_zones
}

module "inventory" {
  source = "../../modules/inventory"

  protocol                  = var.protocol
  replica_private_addresses = module.cluster.replica_private_addresses
  replica_public_addresses  = module.cluster.replica_public_addresses
  client_private_addresses  = module.cluster.client_private_addresses
  client_public_addresses   = module.cluster.client_public_addresses
  ssh_user                  = module.cluster.ssh_user
}

output "inventory_json" {
  description = "terraform output -raw inventory_json > inventory.json"
  value       = module.inventory.inventory_json
}

output "keygen_command" {
  value = module.inventory.keygen_command
}
