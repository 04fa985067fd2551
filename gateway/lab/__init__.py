"""The seed's labs in network namespaces: hosts, VMs and a provider network on one
Linux machine, with host-role daemons doing what Hyper-V hosts do."""
