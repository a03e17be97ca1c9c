# Provider-free: turns address lists into what bftbench reads. Keys are never
# made here (they would land in Terraform state): the harness generates fresh
# ones per run, and `bftbench keygen --addrs` makes a long-lived set.

locals {
  replica_count = var.protocol == "bare" ? 1 : length(var.replica_private_addresses)

  replicas = [
    for i in range(length(var.replica_private_addresses)) : {
      name     = format("replica-%d", i)
      ssh_host = var.replica_public_addresses[i]
      address  = var.replica_private_addresses[i]
    }
  ]
  clients = [
    for i in range(length(var.client_private_addresses)) : {
      name     = format("client-%d", i)
      ssh_host = var.client_public_addresses[i]
      address  = var.client_private_addresses[i]
    }
  ]

  # The file `bftbench matrix run --backend ssh --inventory` reads.
  inventory = {
    version      = 1
    protocol     = var.protocol
    ssh_user     = var.ssh_user
    ssh_port     = var.ssh_port
    replica_port = var.replica_port
    kv_port      = var.kv_port
    replicas     = local.replicas
    clients      = local.clients
  }

  cluster_addresses = [
    for a in slice(var.replica_private_addresses, 0, local.replica_count) : format("%s:%d", a, var.replica_port)
  ]
}

# Checks that need the values together; a failed precondition stops the plan.
resource "terraform_data" "inventory" {
  input = local.inventory

  lifecycle {
    precondition {
      condition     = length(distinct(var.replica_private_addresses)) == length(var.replica_private_addresses)
      error_message = "Two replica hosts share a private address: each replica needs its own host."
    }
    precondition {
      condition     = length(setintersection(var.replica_private_addresses, var.client_private_addresses)) == 0
      error_message = "A client host is also a replica host: clients would compete with replicas for CPU."
    }
  }
}
