"""The appliance: a self-hosted server that runs AI coding sessions in isolated KVM guests."""

__version__ = "0.1.0"
