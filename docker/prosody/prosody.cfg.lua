-- The compose stack's XMPP server (prosody 0.12): one domain, accounts created at start by start.sh
-- from the password files in docker/secrets, and a shared roster group (groups.txt).
pidfile = "/run/prosody/prosody.pid"
data_path = "/var/lib/prosody"
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "*" }
c2s_ports = { 5222 }
groups_file = "/etc/prosody/groups.txt"
Include "common.cfg.lua"

VirtualHost "vpn.test"
  ssl = { key = "/var/lib/prosody/vpn.test.key"; certificate = "/var/lib/prosody/vpn.test.crt" }
