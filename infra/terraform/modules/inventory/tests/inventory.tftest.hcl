# Offline: `terraform init -backend=false && terraform test` (no provider).

variables {
  protocol                  = "bft"
  replica_private_addresses = ["10.0.1.10", "10.0.1.11", "10.0.1.12", "10.0.1.13"]
  replica_public_addresses  = ["3.0.0.10", "3.0.0.11", "3.0.0.12", "3.0.0.13"]
  client_private_addresses  = ["10.0.1.50"]
  client_public_addresses   = ["3.0.0.50"]
}

run "bft_four_hosts_make_an_inventory" {
  command = apply

  assert {
    condition     = jsondecode(output.inventory_json).replicas[3].address == "10.0.1.13"
    error_message = "replica 3 keeps its private address"
  }
  assert {
    condition     = jsondecode(output.inventory_json).replicas[0].ssh_host == "3.0.0.10"
    error_message = "replica 0 is reached over SSH on its public address"
  }
  assert {
    condition     = jsondecode(output.inventory_json).clients[0].name == "client-0"
    error_message = "the client host is named client-0"
  }
  assert {
    condition     = jsondecode(output.inventory_json).replica_port == 7000 && jsondecode(output.inventory_json).version == 1
    error_message = "default port and format version"
  }
  assert {
    condition     = output.cluster_addresses == ["10.0.1.10:7000", "10.0.1.11:7000", "10.0.1.12:7000", "10.0.1.13:7000"]
    error_message = "cluster addresses are host:port in id order"
  }
  assert {
    condition     = output.keygen_command == "bftbench keygen --protocol bft --addrs 10.0.1.10:7000,10.0.1.11:7000,10.0.1.12:7000,10.0.1.13:7000 --out cluster"
    error_message = "keygen command lists every replica"
  }
}

run "bft_rejects_five_hosts" {
  command = plan
  variables {
    replica_private_addresses = ["10.0.1.10", "10.0.1.11", "10.0.1.12", "10.0.1.13", "10.0.1.14"]
    replica_public_addresses  = ["3.0.0.10", "3.0.0.11", "3.0.0.12", "3.0.0.13", "3.0.0.14"]
  }
  expect_failures = [var.replica_private_addresses]
}

run "bft_accepts_seven_hosts" {
  command = plan
  variables {
    replica_private_addresses = ["10.0.1.10", "10.0.1.11", "10.0.1.12", "10.0.1.13", "10.0.1.14", "10.0.1.15", "10.0.1.16"]
    replica_public_addresses  = ["3.0.0.10", "3.0.0.11", "3.0.0.12", "3.0.0.13", "3.0.0.14", "3.0.0.15", "3.0.0.16"]
  }
  assert {
    condition     = length(output.cluster_addresses) == 7
    error_message = "seven replicas"
  }
}

run "raft_rejects_two_hosts" {
  command = plan
  variables {
    protocol                  = "raft"
    replica_private_addresses = ["10.0.1.10", "10.0.1.11"]
    replica_public_addresses  = ["3.0.0.10", "3.0.0.11"]
  }
  expect_failures = [var.replica_private_addresses]
}

run "raft_accepts_three_hosts" {
  command = plan
  variables {
    protocol                  = "raft"
    replica_private_addresses = ["10.0.1.10", "10.0.1.11", "10.0.1.12"]
    replica_public_addresses  = ["3.0.0.10", "3.0.0.11", "3.0.0.12"]
  }
  assert {
    condition     = length(output.cluster_addresses) == 3
    error_message = "three replicas"
  }
}

run "bare_uses_the_first_host" {
  command = plan
  variables {
    protocol = "bare"
  }
  assert {
    condition     = output.cluster_addresses == ["10.0.1.10:7000"]
    error_message = "bare is one server"
  }
}

run "rejects_unknown_protocol" {
  command = plan
  variables {
    protocol = "pbft"
  }
  expect_failures = [var.protocol]
}

run "rejects_mismatched_address_lists" {
  command = plan
  variables {
    replica_public_addresses = ["3.0.0.10", "3.0.0.11", "3.0.0.12"]
  }
  expect_failures = [var.replica_public_addresses]
}

run "rejects_no_client" {
  command = plan
  variables {
    client_private_addresses = []
    client_public_addresses  = []
  }
  expect_failures = [var.client_private_addresses]
}

run "rejects_a_shared_replica_address" {
  command = plan
  variables {
    replica_private_addresses = ["10.0.1.10", "10.0.1.10", "10.0.1.12", "10.0.1.13"]
  }
  expect_failures = [terraform_data.inventory]
}

run "rejects_a_client_on_a_replica_host" {
  command = plan
  variables {
    client_private_addresses = ["10.0.1.12"]
  }
  expect_failures = [terraform_data.inventory]
}

run "rejects_kv_port_equal_to_replica_port" {
  command = plan
  variables {
    kv_port = 7000
  }
  expect_failures = [var.kv_port]
}
