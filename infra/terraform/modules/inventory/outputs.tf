output "inventory_json" {
  description = "The inventory for `bftbench matrix run --backend ssh --inventory FILE`."
  value       = jsonencode(terraform_data.inventory.output)
}

output "cluster_addresses" {
  description = "Replica addresses (host:port) in replica-id order, as the cluster file lists them."
  value       = local.cluster_addresses
}

output "keygen_command" {
  description = "Writes a cluster file and keys for these hosts (for running replicas by hand)."
  value = format(
    "bftbench keygen --protocol %s --addrs %s --out cluster",
    var.protocol,
    join(",", local.cluster_addresses),
  )
}
