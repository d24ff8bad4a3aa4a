#!/usr/bin/env python3
r"""Gy gateway (PGW/PCEF) simulator built on python-diameter's Node API.

Connects to one Diameter peer over TCP (our OCS directly, or a relay such as
freeDiameterd), does CER/CEA, sends the Credit-Control-Requests described by a
JSON script, prints one JSON line per answer on stdout, then disconnects with
DPR/DPA.

    gy_client.py --host 127.0.0.1 --port 3868 \
        --peer-host ocs.rollover.test --peer-realm rollover.test \
        --script steps.json

Script: a JSON list of steps, each one CCR (see README.md for all keys):

    [{"type": "initial", "session": "s1", "imsi": "001010000000001",
      "sgsn_mcc_mnc": "23415", "rating_group": 10, "requested_octets": 1000000},
     {"type": "update", "session": "s1", "used_octets": 400000,
      "requested_octets": 1000000},
     {"repeat": true},
     {"type": "termination", "session": "s1", "used_octets": 1000}]

Output, one line per step (step is the 0-based index in the script):

    {"step": 0, "session": "s1", "result_code": 2001, "cc_request_number": 0,
     "mscc": [{"rating_group": 10, "result_code": 2001, "granted_octets": 1000000,
               "validity_time": 600, "volume_quota_threshold": 200000,
               "final_unit_action": null}]}

Exit codes: 0 every step answered and DPA received; 2 bad arguments or
script; 3 connection / CER failure or connection lost; 4 answer timeout;
5 all answered but the peer did not answer our DPR (unless --allow-no-dpa).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from diameter.message import constants as C
from diameter.message.avp.grouped import (
    MultipleServicesCreditControl,
    PsInformation,
    RequestedServiceUnit,
    ServiceInformation,
    UsedServiceUnit,
)
from diameter.message.commands.credit_control import CreditControlRequest
from diameter.node import Node
from diameter.node.application import Application
from diameter.node import peer as peer_mod

SERVICE_CONTEXT_ID = "32251@3gpp.org"
REQUEST_TYPES = {
    "initial": C.E_CC_REQUEST_TYPE_INITIAL_REQUEST,
    "update": C.E_CC_REQUEST_TYPE_UPDATE_REQUEST,
    "termination": C.E_CC_REQUEST_TYPE_TERMINATION_REQUEST,
    "event": C.E_CC_REQUEST_TYPE_EVENT_REQUEST,
}
# Keys accepted in a step (anything else is a script error: catches typos).
STEP_KEYS = {
    "type", "session", "request_number", "imsi", "msisdn", "sgsn_mcc_mnc",
    "rating_group", "requested_octets", "used_octets", "used_input_octets",
    "used_output_octets", "reporting_reason", "mscc", "termination_cause",
    "requested_action", "repeat", "retransmit_flag", "comment", "session_id",
}
MSCC_KEYS = {
    "rating_group", "requested_octets", "used_octets", "used_input_octets",
    "used_output_octets", "reporting_reason",
}
DISCONNECT_REASONS = {
    peer_mod.DISCONNECT_REASON_FAILED_CONNECT: "TCP connect failed",
    peer_mod.DISCONNECT_REASON_FAILED_CONNECT_CE: "no CEA within the timeout",
    peer_mod.DISCONNECT_REASON_CER_REJECTED: "CER rejected by the peer",
    peer_mod.DISCONNECT_REASON_GONE_AWAY: "peer closed the connection",
    peer_mod.DISCONNECT_REASON_SOCKET_FAIL: "TCP connect failed or socket error",
    peer_mod.DISCONNECT_REASON_DWA_TIMEOUT: "DWA timeout",
    peer_mod.DISCONNECT_REASON_DPR: "peer sent DPR",
}


class ScriptError(Exception):
    pass


class GyApplication(Application):
    """Client side of Gy. The plain (non-threading) Application is enough for
    sending, and unlike ThreadingApplication it stops at once (its queue
    threads make Node.stop() linger for ~4 s)."""

    def handle_request(self, message):
        # A server-initiated request (RAR, ASR) is not scripted: report it and
        # answer DIAMETER_UNABLE_TO_COMPLY so the peer is not left waiting.
        print(f"gy_client: unexpected request from peer: {message}",
              file=sys.stderr, flush=True)
        self.send_answer(self.generate_answer(
            message, result_code=C.E_RESULT_CODE_DIAMETER_UNABLE_TO_COMPLY))


def exit_now(code: int) -> None:
    """Exit without waiting for python-diameter's leftover worker threads
    (non-daemon, they poll queues with multi-second timeouts)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def fail(code: int, message: str) -> None:
    print(f"gy_client: {message}", file=sys.stderr, flush=True)
    exit_now(code)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Diameter Gy (CCR) test client")
    p.add_argument("--host", default="127.0.0.1", help="IP address to connect to")
    p.add_argument("--port", type=int, default=3868, help="TCP port to connect to")
    p.add_argument("--origin-host", default="pgw.test", help="our Origin-Host")
    p.add_argument("--origin-realm", default="test", help="our Origin-Realm")
    p.add_argument("--peer-host", required=True,
                   help="Origin-Host expected in the CEA of the peer we connect to")
    p.add_argument("--peer-realm", required=True, help="realm of that peer")
    p.add_argument("--dest-realm",
                   help="Destination-Realm of the CCRs (default: --peer-realm; "
                        "set it to the OCS realm when --peer-host is a relay)")
    p.add_argument("--dest-host",
                   help="Destination-Host to put in every CCR (default: none in "
                        "CCR-I/event, then the Origin-Host of the session's CCA-I)")
    p.add_argument("--no-dest-host", action="store_true",
                   help="never send Destination-Host")
    p.add_argument("--script", required=True, help="JSON file with the steps ('-' = stdin)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for CEA and for each answer (default 5)")
    p.add_argument("--allow-no-dpa", action="store_true",
                   help="exit 0 even if the peer does not answer our DPR")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log to stderr (-v info, -vv debug with message dumps)")
    return p.parse_args(argv)


def load_script(path: str) -> list[dict]:
    try:
        if path == "-":
            steps = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as f:
                steps = json.load(f)
    except (OSError, ValueError) as e:
        raise ScriptError(f"cannot read script {path}: {e}")
    if not isinstance(steps, list) or not steps:
        raise ScriptError("script must be a non-empty JSON list of steps")
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ScriptError(f"step {i}: not a JSON object")
        unknown = set(step) - STEP_KEYS
        if unknown:
            raise ScriptError(f"step {i}: unknown keys {sorted(unknown)}")
        if step.get("repeat"):
            if i == 0:
                raise ScriptError("step 0: 'repeat' needs a previous step")
            continue
        if step.get("type") not in REQUEST_TYPES:
            raise ScriptError(f"step {i}: 'type' must be one of {sorted(REQUEST_TYPES)}")
        if not isinstance(step.get("session"), str):
            raise ScriptError(f"step {i}: 'session' (a name) is required")
        for m in step.get("mscc", []):
            if not isinstance(m, dict) or set(m) - MSCC_KEYS:
                raise ScriptError(f"step {i}: bad 'mscc' entry {m!r}")
    return steps


def build_mscc(spec: dict) -> MultipleServicesCreditControl:
    """One MSCC from a step (or one entry of its 'mscc' list)."""
    mscc = MultipleServicesCreditControl(rating_group=spec.get("rating_group", 10))
    if spec.get("requested_octets") is not None:
        mscc.requested_service_unit = RequestedServiceUnit(
            cc_total_octets=spec["requested_octets"])
    used_keys = ("used_octets", "used_input_octets", "used_output_octets")
    if any(spec.get(k) is not None for k in used_keys):
        usu = UsedServiceUnit(
            cc_total_octets=spec.get("used_octets"),
            cc_input_octets=spec.get("used_input_octets"),
            cc_output_octets=spec.get("used_output_octets"))
        mscc.used_service_unit = [usu]
    if spec.get("reporting_reason") is not None:
        mscc.reporting_reason = [spec["reporting_reason"]]
    return mscc


class Client:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dest_realm = args.dest_realm or args.peer_realm
        # Node with no listen address: a pure client.
        self.node = Node(args.origin_host, args.origin_realm,
                         vendor_ids=[C.VENDOR_TGPP])
        self.node.wakeup_interval = 1   # timer granularity; also speeds up stop()
        self.node.cea_timeout = max(1, int(args.timeout))
        uri = f"aaa://{args.peer_host}:{args.port};transport=tcp"
        self.peer = self.node.add_peer(uri, args.peer_realm, ip_addresses=[args.host],
                                       is_persistent=True)
        self.peer.reconnect_wait = 3600  # never silently reconnect during a run
        self.app = GyApplication(
            C.APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True)
        realms = [self.dest_realm] if self.dest_realm != args.peer_realm else None
        self.node.add_application(self.app, [self.peer], realms=realms)
        # session name -> {"id": Session-Id, "next": next CC-Request-Number,
        #                  "dest_host": Origin-Host learnt from the CCA-I}
        self.sessions: dict[str, dict] = {}
        self.last_request: CreditControlRequest | None = None
        self.last_session: str | None = None

    # -- connection -------------------------------------------------------

    def connect(self) -> None:
        self.node.start()
        deadline = time.time() + self.args.timeout
        while time.time() < deadline:
            if self.app.is_ready.wait(0.05):
                break
            # Give up early when the connection attempt has already failed.
            if self.peer.disconnect_reason is not None and self.peer.connection is None:
                break
        if not self.app.is_ready.is_set():
            reason = DISCONNECT_REASONS.get(self.peer.disconnect_reason,
                                            f"no CEA within {self.args.timeout}s")
            fail(3, f"could not establish Diameter connection to "
                    f"{self.args.host}:{self.args.port}: {reason}")
        conn = self.peer.connection
        got = (conn.host_identity or "").lower() if conn else ""
        if got != self.args.peer_host.lower():
            self.stop()
            fail(3, f"CEA Origin-Host is {got!r}, expected {self.args.peer_host!r}")
        logging.getLogger("gy_client").info("connected to %s", got)

    def stop(self, force: bool = False) -> None:
        try:
            self.node.stop(wait_timeout=int(max(2, self.args.timeout)), force=force)
        except RuntimeError:
            pass

    # -- requests ---------------------------------------------------------

    def build_request(self, step: dict) -> CreditControlRequest:
        name = step["session"]
        sess = self.sessions.get(name)
        if sess is None:
            # "session_id" continues a session another run of this client
            # (another connection, perhaps to another node) began.
            sess = {"id": step.get("session_id") or self.node.session_generator.next_id(),
                    "next": 0, "dest_host": None}
            self.sessions[name] = sess
        number = step.get("request_number", sess["next"])
        sess["next"] = number + 1
        req_type = REQUEST_TYPES[step["type"]]

        ccr = CreditControlRequest()
        ccr.session_id = sess["id"]
        ccr.origin_host = self.args.origin_host.encode()
        ccr.origin_realm = self.args.origin_realm.encode()
        ccr.destination_realm = self.dest_realm.encode()
        ccr.auth_application_id = C.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
        ccr.service_context_id = SERVICE_CONTEXT_ID
        ccr.cc_request_type = req_type
        ccr.cc_request_number = number
        ccr.origin_state_id = self.node.state_id
        if not self.args.no_dest_host:
            dest_host = self.args.dest_host or sess["dest_host"]
            if dest_host:
                ccr.destination_host = dest_host.encode()
        if step.get("imsi"):
            ccr.add_subscription_id(C.E_SUBSCRIPTION_ID_TYPE_END_USER_IMSI, step["imsi"])
        if step.get("msisdn"):
            ccr.add_subscription_id(C.E_SUBSCRIPTION_ID_TYPE_END_USER_E164, step["msisdn"])
        if req_type in (C.E_CC_REQUEST_TYPE_INITIAL_REQUEST, C.E_CC_REQUEST_TYPE_EVENT_REQUEST):
            ccr.multiple_services_indicator = C.E_MULTIPLE_SERVICES_INDICATOR_MULTIPLE_SERVICES_SUPPORTED
        if req_type == C.E_CC_REQUEST_TYPE_EVENT_REQUEST:
            ccr.requested_action = step.get("requested_action", C.E_REQUESTED_ACTION_DIRECT_DEBITING)
        if req_type == C.E_CC_REQUEST_TYPE_TERMINATION_REQUEST:
            ccr.termination_cause = step.get("termination_cause",
                                             C.E_TERMINATION_CAUSE_DIAMETER_LOGOUT)
        specs = step["mscc"] if "mscc" in step else [step]
        ccr.multiple_services_credit_control = [build_mscc(s) for s in specs]
        if step.get("sgsn_mcc_mnc"):
            ccr.service_information = ServiceInformation(
                ps_information=PsInformation(tgpp_sgsn_mcc_mnc=step["sgsn_mcc_mnc"]))
        return ccr

    def run_step(self, i: int, step: dict) -> dict:
        if step.get("repeat"):
            # Same bytes as before (Session-Id, CC-Request-Number, End-to-End
            # id), a fresh Hop-by-Hop id, T flag set unless told otherwise.
            ccr = self.last_request
            ccr.header.hop_by_hop_identifier = 0
            ccr.header.is_retransmit = step.get("retransmit_flag", True)
            session = self.last_session
        else:
            ccr = self.build_request(step)
            session = step["session"]
        self.last_request, self.last_session = ccr, session

        try:
            answer = self.app.send_request(ccr, timeout=self.args.timeout)
        except TimeoutError:
            self.stop()
            fail(4, f"step {i}: no answer within {self.args.timeout}s")
        except Exception as e:  # NotRoutable etc.: the connection is gone
            reason = DISCONNECT_REASONS.get(self.peer.disconnect_reason, repr(e))
            fail(3, f"step {i}: cannot send request: {reason}")

        if (ccr.cc_request_type == C.E_CC_REQUEST_TYPE_INITIAL_REQUEST
                and getattr(answer, "origin_host", None)):
            self.sessions[session]["dest_host"] = answer.origin_host.decode()
        return {
            "step": i,
            "session": session,
            "result_code": getattr(answer, "result_code", None),
            "cc_request_number": getattr(answer, "cc_request_number", None),
            "mscc": [mscc_to_json(m) for m in
                     (getattr(answer, "multiple_services_credit_control", None) or [])],
        }

    def run(self, steps: list[dict]) -> int:
        self.connect()
        for i, step in enumerate(steps):
            print(json.dumps(self.run_step(i, step)), flush=True)
        dpa_before = self.peer.counters.dpa
        self.stop()
        if self.peer.counters.dpa <= dpa_before:
            msg = "peer did not answer our DPR with a DPA"
            if not self.args.allow_no_dpa:
                fail(5, msg)
            print(f"gy_client: warning: {msg}", file=sys.stderr, flush=True)
        return 0


def mscc_to_json(m: MultipleServicesCreditControl) -> dict:
    gsu = m.granted_service_unit
    fui = m.final_unit_indication
    return {
        "rating_group": m.rating_group,
        "result_code": m.result_code,
        "granted_octets": gsu.cc_total_octets if gsu else None,
        "validity_time": m.validity_time,
        "volume_quota_threshold": m.volume_quota_threshold,
        "final_unit_action": fui.final_unit_action if fui else None,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.verbose:
        logging.basicConfig(stream=sys.stderr,
                            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    else:
        # python-diameter warns on stderr about things we report ourselves.
        logging.basicConfig(stream=sys.stderr, level=logging.ERROR)
    try:
        steps = load_script(args.script)
    except ScriptError as e:
        fail(2, str(e))
    return Client(args).run(steps)


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:          # argparse errors / --help
        code = e.code if isinstance(e.code, int) else 2
    except BrokenPipeError:          # stdout reader went away
        code = 1
    except BaseException:            # never hang on python-diameter's threads
        import traceback
        traceback.print_exc()
        code = 1
    exit_now(code)
