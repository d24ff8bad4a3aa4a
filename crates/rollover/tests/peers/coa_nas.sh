#!/bin/sh
# coa_nas.sh DIR PORT SECRET
#
# Runs FreeRADIUS 3.2 (Debian package `freeradius`) as a stand-in NAS that
# RECEIVES RFC 5176 CoA-Request and Disconnect-Request on 127.0.0.1:PORT
# (UDP) from the client 127.0.0.1 with the shared secret SECRET.
#
#  * DIR/raddb/          private copy of /etc/freeradius/3.0, trimmed down:
#                        no default / inner-tunnel sites, no 1812/1813/18120
#                        listeners, no proxying, only the modules used here.
#  * DIR/received.log    one line per received request, 6 TAB-separated
#                        fields (the line is written just before answering):
#      packet  reply  src-ip:port  unix-time  request-authenticator  attributes
#    e.g. (<TAB> = one tab character)
#      CoA-Request<TAB>CoA-ACK<TAB>127.0.0.1:40001<TAB>1700000000<TAB>0x1f...<TAB>Acct-Session-Id = "s1", User-Name = "u", Mikrotik-Rate-Limit = "1k/1k"
#    attributes = every attribute of the request, ", "-separated, in
#    FreeRADIUS / radclient syntax: strings in double quotes (with \" and \\
#    escapes inside), integers, enum names and IP addresses bare; a
#    repeated attribute (e.g. Cisco-AVPair) appears once per value.
#  * DIR/freeradius.log  the -X debug output. The line
#                        "Ready to process requests" means it is listening.
#
# Answers CoA-ACK / Disconnect-ACK, except when the request carries
# Acct-Session-Id = "nak-me": then CoA-NAK / Disconnect-NAK with
# Error-Cause = Session-Context-Not-Found (503).
#
# The last step is `exec freeradius -X ...` in the foreground, so the PID of
# this script becomes the server; SIGTERM / SIGKILL it to stop it.
#
# Needs read access to /etc/freeradius/3.0 (mode 0640 freerad:freerad on
# Debian: run as root or as a member of group freerad). Override the source
# folder with COA_NAS_RADDB_SRC.
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 DIR PORT SECRET" >&2
    exit 2
fi

DIR=$1
PORT=$2
SECRET=$3
SRC=${COA_NAS_RADDB_SRC:-/etc/freeradius/3.0}

case $PORT in
    ''|*[!0-9]*) echo "$0: PORT must be a number" >&2; exit 2 ;;
esac
case $SECRET in
    ''|*'"'*|*'\'*) echo "$0: SECRET must be non-empty, without \" or \\" >&2; exit 2 ;;
esac

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)          # absolute: the config refers to it
RADDB=$DIR/raddb

rm -rf "$RADDB"
cp -a "$SRC" "$RADDB"
mkdir -p "$DIR/run"
: > "$DIR/received.log"

# --- radiusd.conf: keep the invoking user, runtime files under DIR -----------
# With user/group commented out there is no privilege drop: as root it stays
# root (so it can write DIR whoever owns it); as another user nothing changes.
sed -i \
    -e 's|^\([[:space:]]*\)user = freerad|\1#user = freerad|' \
    -e 's|^\([[:space:]]*\)group = freerad|\1#group = freerad|' \
    -e "s|^logdir = .*|logdir = $DIR|" \
    -e "s|^run_dir = .*|run_dir = $DIR/run|" \
    -e 's|^\([[:space:]]*\)colourise = yes|\1colourise = no|' \
    "$RADDB/radiusd.conf"

# --- clients: only 127.0.0.1 with our secret ---------------------------------
cat > "$RADDB/clients.conf" <<EOF_CLIENTS
client rollover_ocs {
	ipaddr = 127.0.0.1
	secret = "$SECRET"
	shortname = rollover-ocs
	require_message_authenticator = no
}
EOF_CLIENTS

# --- no proxying (the stock file defines home servers and realms) -----------
cat > "$RADDB/proxy.conf" <<'EOF_PROXY'
proxy server {
	default_fallback = no
}
EOF_PROXY

# --- modules: only what the site below uses ----------------------------------
rm -f "$RADDB"/mods-enabled/*
# "always" defines ok, reject, ...; "expr" provides %{pairs:...}.
ln -s ../mods-available/always "$RADDB/mods-enabled/always"
ln -s ../mods-available/expr "$RADDB/mods-enabled/expr"

# A literal TAB in the format: the config parser keeps "\t" as backslash-t.
TAB=$(printf '\t')
cat > "$RADDB/mods-enabled/rollover_nas" <<EOF_MODS
linelog received_log {
	filename = $DIR/received.log
	permissions = 0644
	format = "%{Packet-Type}${TAB}%{control:Tmp-String-0}${TAB}%{Packet-Src-IP-Address}:%{Packet-Src-Port}${TAB}%l${TAB}%{Packet-Authentication-Vector}${TAB}%{pairs:request:}"
}
EOF_MODS

# --- the one and only virtual server and listener ----------------------------
rm -f "$RADDB"/sites-enabled/*
cat > "$RADDB/sites-enabled/rollover_nas" <<EOF_SITE
listen {
	type = coa
	ipaddr = 127.0.0.1
	port = $PORT
	virtual_server = rollover_nas
}

server rollover_nas {
	# Runs for both CoA-Request and Disconnect-Request.
	# Section result ok => CoA-ACK / Disconnect-ACK,
	# reject => CoA-NAK / Disconnect-NAK.
	recv-coa {
		if (&request:Acct-Session-Id == "nak-me") {
			if (Packet-Type == Disconnect-Request) {
				update control {
					&Tmp-String-0 := "Disconnect-NAK"
				}
			}
			else {
				update control {
					&Tmp-String-0 := "CoA-NAK"
				}
			}
			update reply {
				&Error-Cause := Session-Context-Not-Found
			}
			received_log
			reject
		}
		else {
			if (Packet-Type == Disconnect-Request) {
				update control {
					&Tmp-String-0 := "Disconnect-ACK"
				}
			}
			else {
				update control {
					&Tmp-String-0 := "CoA-ACK"
				}
			}
			received_log
			ok
		}
	}

	# Only used when this server would itself send CoA; kept for syntax.
	send-coa {
		ok
	}
}
EOF_SITE

exec freeradius -X -d "$RADDB" >"$DIR/freeradius.log" 2>&1
