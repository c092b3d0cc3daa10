"""Egress policy: what a sandbox may reach, enforced on the host.

`netpolicy.service.EgressPolicy` is the facade the sandbox layer uses. Behind it: the nftables
ruleset (`ruleset` generates it, `nft` applies it), the per-sandbox policy table (`policy`) read by
the mitmproxy addon (`proxy_addon`, run by `proxy_process`) and by the filtering resolver
(`resolver`), allowlists and levels (`allowlist`), the interception CA (`ca`) and the audit log
(`audit`). The bridge and taps themselves are `netpolicy.bridge`'s.
"""
