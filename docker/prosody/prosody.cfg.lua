-- The compose stack's XMPP server (prosody 0.12): one domain, accounts created at start by start.sh
-- from the password files in docker/secrets, and a shared roster group (groups.txt).
pidfile = "/run/prosody/prosody.pid"
data_path = "/var/lib/prosody"
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "*" }
c2s_ports = { 5222 }
s2s_ports = { }
c2s_direct_tls_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "groups" }
modules_disabled = { "s2s" }
c2s_require_encryption = true
allow_registration = false
authentication = "internal_hashed"
storage = "internal"
groups_file = "/etc/prosody/groups.txt"

VirtualHost "vpn.test"
  ssl = { key = "/var/lib/prosody/vpn.test.key"; certificate = "/var/lib/prosody/vpn.test.crt" }
