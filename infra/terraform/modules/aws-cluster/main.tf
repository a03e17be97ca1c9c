# A flat cluster: one VPC, one public subnet per zone, replica and client
# instances that reach each other on every port and the outside only on SSH.

data "aws_ami" "debian" {
  count       = var.ami == null ? 1 : 0
  most_recent = true
  owners      = ["136693071363"] # Debian's AWS account

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

locals {
  ami = var.ami == null ? data.aws_ami.debian[0].id : var.ami
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = var.name }
}

resource "aws_subnet" "zone" {
  count                   = length(var.availability_zones)
  vpc_id                  = aws_vpc.this.id
  availability_zone       = var.availability_zones[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index)
  map_public_ip_on_launch = true
  tags                    = { Name = "${var.name}-${var.availability_zones[count.index]}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
  tags = { Name = var.name }
}

resource "aws_route_table_association" "zone" {
  count          = length(aws_subnet.zone)
  subnet_id      = aws_subnet.zone[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_security_group" "cluster" {
  name_prefix = "${var.name}-"
  vpc_id      = aws_vpc.this.id
  description = "bftbench: SSH from the operator, everything inside the cluster"
  tags        = { Name = var.name }
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = aws_security_group.cluster.id
  cidr_ipv4         = var.ssh_cidr
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
}

resource "aws_vpc_security_group_ingress_rule" "inside" {
  security_group_id            = aws_security_group.cluster.id
  referenced_security_group_id = aws_security_group.cluster.id
  ip_protocol                  = "-1"
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.cluster.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

resource "aws_key_pair" "operator" {
  key_name_prefix = "${var.name}-"
  public_key      = var.ssh_public_key
}

resource "aws_instance" "replica" {
  count                  = var.replica_count
  ami                    = local.ami
  instance_type          = var.replica_instance_type
  subnet_id              = aws_subnet.zone[count.index % length(aws_subnet.zone)].id
  vpc_security_group_ids = [aws_security_group.cluster.id]
  key_name               = aws_key_pair.operator.key_name
  tags                   = { Name = "${var.name}-replica-${count.index}", Role = "replica" }
}

resource "aws_instance" "client" {
  count                  = var.client_count
  ami                    = local.ami
  instance_type          = var.client_instance_type
  subnet_id              = aws_subnet.zone[0].id
  vpc_security_group_ids = [aws_security_group.cluster.id]
  key_name               = aws_key_pair.operator.key_name
  tags                   = { Name = "${var.name}-client-${count.index}", Role = "client" }
}
