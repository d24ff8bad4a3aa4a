#!/usr/bin/env python3
r"""Run freeDiameterd (Debian package `freediameter`, 1.2.1) as a Diameter relay
between a Gy client (gy_client.py) and our OCS.

    python3 fd_relay.py --dir D --listen-port P --server-host 127.0.0.1 \
        --server-port S --server-identity ocs.rollover.test \
        --server-realm rollover.test

writes D/freeDiameter.conf (+ acl_wl.conf, rt_default.conf and a self-signed
cert.pem/key.pem) and then os.execvp()s `freeDiameterd -c D/freeDiameter.conf`:
the PID you spawned IS freeDiameterd. SIGTERM makes it send DPR to its peers
and exit 0 within ~0.1 s; SIGKILL just drops the connections. Its log goes to
stdout, one line at a time (flushed, also through a pipe). Standard library
only. The client then connects with:
    gy_client.py --port P --peer-host relay.test --peer-realm test \
        --dest-realm rollover.test ...

Observed with freeDiameterd 1.2.1 on this machine (python-diameter as server)
--------------------------------------------------------------------------
CER it sends to our server (flags R, Application-Id 0), AVPs in this order:
    Origin-Host "relay.test", Origin-Realm "test", Origin-State-Id <start time>,
    Host-IP-Address = the machine's primary address (192.0.2.2 here), NOT
      127.0.0.1 even though it connects over loopback,
    Vendor-Id 0, Product-Name "freeDiameter" (no M bit),
    Firmware-Revision 10201 (no M bit),
    Inband-Security-Id 0 (NO_INBAND_SECURITY),
    Auth-Application-Id 4294967295 (0xffffffff, Relay) -- the ONLY application:
      no Auth-Application-Id 4, no Acct-Application-Id,
      no Vendor-Specific-Application-Id,
    Supported-Vendor-Id 5535 (3GPP2) and Supported-Vendor-Id 10415 (3GPP).
  So our server must accept a CER whose only application is Relay and answer
  2001 with Auth-Application-Id 4. Its CEA Origin-Host must equal
  --server-identity (freeDiameterd checks it against the ConnectPeer name).
DWR: Origin-Host, Origin-Realm, Origin-State-Id. Sent after TwTimer seconds
  without traffic from the peer, with RFC 3539 jitter: with TwTimer = 6 the
  DWRs came 5..8 s apart (first 5-8 s after the CEA). No DWA: the peer goes
  'STATE_OPEN' -> 'STATE_SUSPECT' after another ~TwTimer, the connection is
  dropped ~2*TwTimer later, re-established after TcTimer, and then needs DWAs
  again (RFC 3539 REOPEN) before it carries traffic.
DPR on SIGTERM: Origin-Host, Origin-Realm, Disconnect-Cause 0 (REBOOTING); it
  waits for the DPA, then closes.
Reconnect: while the server is down it retries about every TcTimer (3 s here;
  the first retry came after 5 s). A CCR that arrives while the server peer is
  not open is answered by freeDiameterd itself: Result-Code 3002
  DIAMETER_UNABLE_TO_DELIVER, E bit, no CC-Request-Number.
Relaying: it rewrites Hop-by-Hop, keeps End-to-End, appends Route-Record
  (the client's identity) to requests and Route-Record (the server's
  identity) to answers, and does not touch the other AVPs.

Log lines a test can wait for (default verbosity; tabs between the fields):
* daemon up:          "freeDiameterd daemon initialized."
* CER/CEA with us OK: "'STATE_WAITCEA'\t-> 'STATE_OPEN'\t'ocs.rollover.test'"
                      (after a watchdog reconnect the left-hand state differs:
                      match the tail "-> 'STATE_OPEN'\t'ocs.rollover.test'").
                      Only this means the relay can forward: wait for it
                      before starting the client.
* client CER/CEA OK:  "'STATE_CLOSED'\t-> 'STATE_OPEN'\t'pgw.test'"
* DPR from client:    "Peer 'pgw.test' sent a DPR with cause: REBOOTING"
* DPR/DPA with us:    "'STATE_OPEN'\t-> 'STATE_CLOSING_GRACE'\t'ocs.rollover.test'"
                      then "ocs.rollover.test: Going to ZOMBIE state"
                      (on shutdown; a DPR that WE send shows "Peer
                      'ocs.rollover.test' sent a DPR with cause: ...")
* DWR/DWA:            not logged at default level. With --dump (one line per
                      message, dbg_msg_dumps 0x2022):
                        "SND to 'ocs.rollover.test': 'Device-Watchdog-Request'0/280 f:R---"
                        "RCV from 'ocs.rollover.test': (no model)0/280 f:----"   (= DWA)
                      received messages show "(no model)" and are told apart by
                      "<app>/<command>" and the R flag; CER/CEA are 0/257, DPR/DPA
                      0/282, CCR/CCA 4/272. --dump also logs
                      "CONNECT FAILED to ocs.rollover.test: ..." and
                      "ROUTING ERROR ...". With --debug --debug (-d -d) the core
                      logs the same as "SENT to '...': 'Device-Watchdog-Request'0/280".
* watchdog failure:   "'STATE_OPEN'\t-> 'STATE_SUSPECT'\t'ocs.rollover.test'"

Traps: a loopback ListenOn is silently ignored by 1.2.1 (it then listens on
0.0.0.0), so we do not set one; unknown peers are refused unless an extension
accepts them, hence acl_wl.fdx with "ALLOW_IPSEC pgw.test" (plain TCP, no TLS);
TLS_Cred is mandatory even though no TLS is used; TwTimer < 6 is a config error.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

FDX_DIR = "/usr/lib/freeDiameter"   # from `dpkg -L freediameter-extensions`
# Order matters: dict_dcca needs dict_nasreq's objects, dict_dcca_3gpp needs both.
DICTIONARIES = ["dict_nasreq.fdx", "dict_dcca.fdx", "dict_dcca_3gpp.fdx"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="freeDiameterd as a Diameter relay")
    p.add_argument("--dir", required=True, help="work dir for config and certs (created)")
    p.add_argument("--listen-port", type=int, required=True,
                   help="TCP port where the client connects")
    p.add_argument("--identity", default="relay.test", help="relay Diameter identity")
    p.add_argument("--realm", default="test", help="relay realm")
    p.add_argument("--client-identity", action="append",
                   help="Origin-Host allowed to connect (repeatable; default pgw.test; "
                        "'*.test' form allowed)")
    p.add_argument("--server-host", required=True, help="our server's IP address")
    p.add_argument("--server-port", type=int, required=True)
    p.add_argument("--server-identity", required=True,
                   help="our server's Origin-Host (must match its CEA)")
    p.add_argument("--server-realm", required=True, help="our server's realm")
    p.add_argument("--tw-timer", type=int, default=6, help="watchdog timer, >= 6")
    p.add_argument("--tc-timer", type=int, default=3, help="reconnect delay, seconds")
    p.add_argument("--debug", action="count", default=0,
                   help="pass -d to freeDiameterd (repeatable)")
    p.add_argument("--dump", action="store_true",
                   help="load dbg_msg_dumps.fdx: one log line per message sent/received")
    p.add_argument("--no-exec", action="store_true",
                   help="only write the files and print the command")
    a = p.parse_args(argv)
    if a.tw_timer < 6:
        p.error("--tw-timer must be at least 6 (freeDiameterd refuses less)")
    a.client_identity = a.client_identity or ["pgw.test"]
    return a


def q(s: str) -> str:
    """freeDiameter config string literal (no escapes supported: reject quotes)."""
    if '"' in s or "\n" in s:
        raise SystemExit(f"fd_relay: bad value {s!r}")
    return f'"{s}"'


def make_cert(d: str, identity: str) -> tuple[str, str]:
    """Self-signed pair: freeDiameterd requires TLS_Cred even with No_TLS."""
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-batch",
             "-days", "3650", "-subj", f"/CN={identity}",
             "-keyout", key, "-out", cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def write_config(a: argparse.Namespace) -> str:
    d = os.path.abspath(a.dir)
    os.makedirs(d, exist_ok=True)
    cert, key = make_cert(d, a.identity)

    # acl_wl: let the client in over plain TCP (ALLOW_IPSEC = "no TLS needed").
    acl = os.path.join(d, "acl_wl.conf")
    with open(acl, "w") as f:
        f.write("ALLOW_IPSEC " + " ".join(a.client_identity) + "\n")

    # rt_default: everything for the server realm goes to the server peer.
    rt = os.path.join(d, "rt_default.conf")
    with open(rt, "w") as f:
        f.write(f"dr={q(a.server_realm)} : {q(a.server_identity)} += FINALDEST ;\n")

    ext = [os.path.join(FDX_DIR, x) for x in DICTIONARIES]
    lines = [
        f"Identity = {q(a.identity)};",
        f"Realm = {q(a.realm)};",
        f"Port = {a.listen_port};",
        "SecPort = 0;            # no TLS listener",
        "No_SCTP;",
        "Prefer_TCP;",
        "No_IPv6;",
        f"TcTimer = {a.tc_timer};",
        f"TwTimer = {a.tw_timer};",
        f"TLS_Cred = {q(cert)}, {q(key)};",
        f"TLS_CA = {q(cert)};",
    ]
    lines += [f"LoadExtension = {q(x)};" for x in ext]
    lines.append(f"LoadExtension = {q(os.path.join(FDX_DIR, 'acl_wl.fdx'))} : {q(acl)};")
    lines.append(f"LoadExtension = {q(os.path.join(FDX_DIR, 'rt_default.fdx'))} : {q(rt)};")
    if a.dump:
        # 0x2022: one line per message sent/received, per error, per peer connect (failed)
        lines.append(f"LoadExtension = {q(os.path.join(FDX_DIR, 'dbg_msg_dumps.fdx'))} : \"0x2022\";")
    lines.append(
        f"ConnectPeer = {q(a.server_identity)} {{ ConnectTo = {q(a.server_host)}; "
        f"Port = {a.server_port}; No_TLS; No_SCTP; Prefer_TCP; }};")
    conf = os.path.join(d, "freeDiameter.conf")
    with open(conf, "w") as f:
        f.write("# written by fd_relay.py\n" + "\n".join(lines) + "\n")
    return conf


def main(argv: list[str]) -> None:
    a = parse_args(argv)
    exe = shutil.which("freeDiameterd")
    if not exe:
        raise SystemExit("fd_relay: freeDiameterd not found (apt-get install freediameter)")
    conf = write_config(a)
    cmd = [exe, "-c", conf] + ["-d"] * a.debug
    if a.no_exec:
        print(" ".join(cmd))
        return
    sys.stdout.flush()
    os.execvp(exe, cmd)   # same PID: killing it kills freeDiameterd


if __name__ == "__main__":
    main(sys.argv[1:])
