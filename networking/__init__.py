"""pystack.networking — bridges, veth, IPAM, embedded DNS, published ports, NAT.

See docs/contracts.md ("networking"). Importing this package is cheap: the manager and
its records load here, pyroute2 and dnslib only when a method needs them.
"""
from .manager import NetworkManager
from .types import (EndpointRecord, EndpointSpec, IPAMPool, NetworkRecord, NetworkSpec,
                    PortBinding, PortSpec)

__all__ = ["NetworkManager", "NetworkSpec", "NetworkRecord", "IPAMPool", "EndpointSpec",
           "EndpointRecord", "PortSpec", "PortBinding"]
