-- The XMPP server settings shared by the compose stack (prosody.cfg.lua) and the test lab
-- (test/lab/servers.ts), both of which Include this file: client logins over STARTTLS only, no
-- server-to-server, no in-band registration, a shared roster from groups_file. Each includer sets
-- its own paths, interfaces, c2s_ports and VirtualHost.
s2s_ports = { }
c2s_direct_tls_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "groups" }
modules_disabled = { "s2s" }
c2s_require_encryption = true
allow_registration = false
authentication = "internal_hashed"
storage = "internal"
