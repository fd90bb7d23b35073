# masgen's rehearsal test script (modules/rehearsal/default.nix puts the line
# `DATA_JSON = "..."` before it: the host's plan and what to check, written by
# masgen into rehearsal/<host>.nix). Runs in nixpkgs' NixOS test driver, which
# provides `machine`, `subtest` and `start_all`.
#
# Migration: seed Synapse (phase 1, its own logins) with users, devices and
# access tokens; run the plan's steps in order with the commands plan.json
# lists (a switch becomes the specialisation's switch-to-configuration) and
# judge each gate the way `masgen apply` does; then check the users in MAS,
# the old access tokens, /login answered by MAS through nginx, and doctor.
# Fresh install: run the plan, register a user through MAS, log in through
# nginx.
import hashlib
import hmac
import json
import shlex
import time
from typing import Any, Dict, List, Optional, Tuple

DATA: Dict[str, Any] = json.loads(DATA_JSON)
PUBLIC: str = DATA["public_base"]
SYNAPSE: str = DATA["synapse_url"]
# Test-only: the VM's users get this password; no real secret is involved.
PASSWORD: str = DATA["password"]
FINAL = "/run/current-system"


def q(text: str) -> str:
    return shlex.quote(text)


def expand(command: str) -> str:
    return command.replace("@FINAL@", FINAL)


def http(
    method: str, url: str, body: Optional[Dict[str, Any]] = None, token: Optional[str] = None
) -> Tuple[int, Any]:
    """One request from inside the VM; the status and the JSON body."""
    cmd = f"curl -sS -o /tmp/masgen-body -w '%{{http_code}}' -X {method} {q(url)}"
    if token is not None:
        cmd += " -H " + q("Authorization: Bearer " + token)
    if body is not None:
        cmd += " -H 'Content-Type: application/json' --data-binary " + q(json.dumps(body))
    status = int(machine.succeed(cmd).strip())
    text = machine.succeed("cat /tmp/masgen-body")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def passes(check: Dict[str, Any], status: int, out: str) -> bool:
    """A gate check judged as `masgen apply` judges it (plan.json, docs/plan.md)."""
    exit_ok = {"zero": status == 0, "nonzero": status != 0, "any": True}[check["exit"]]
    lines = [line.strip() for line in out.splitlines()]
    has = all(line in lines for line in check["stdout_has"])
    lacks = not any(line in lines for line in check["stdout_lacks"])
    return exit_ok and has and lacks


def failed_checks(checks: List[Dict[str, Any]]) -> List[str]:
    failed = []
    for check in checks:
        status, out = machine.execute(expand(check["command"]))
        if not passes(check, status, out):
            failed.append(f"`{check['command']}` exited {status}:\n{out}")
    return failed


def run_step(step: Dict[str, Any]) -> None:
    with subtest(f"[{step['id']}] {step['title']}"):
        for command in step["commands"]:
            # A failing command is judged by the gate (syn2mas exits 11 on
            # warnings, which fails its unit).
            status, out = machine.execute(expand(command))
            print(f"$ {command}\n(exit {status})\n{out}")
        # After an activation, services may still be starting: a switch's
        # gate gets two minutes to hold.
        deadline = time.monotonic() + (120 if step["kind"] == "rebuild" else 0)
        failed = failed_checks(step["checks"])
        while failed and time.monotonic() < deadline:
            time.sleep(2)
            failed = failed_checks(step["checks"])
        if not failed:
            return
        warnings = step["warnings_only"]
        if warnings is not None and not failed_checks([warnings]):
            # Like `masgen apply --accept-warnings`: shown, then accepted.
            print(f"[{step['id']}] syn2mas reported warnings only; accepted in the rehearsal")
            return
        raise Exception(f"[{step['id']}] gate failed: {step['condition']}\n" + "\n".join(failed))


def register_in_synapse(localpart: str, admin: bool) -> Dict[str, Any]:
    """Synapse's shared-secret registration (the admin API): a user with a
    password, a device and an access token."""
    secret = machine.succeed("cat /run/masgen-rehearsal/registration-secret").strip()
    url = SYNAPSE + "/_synapse/admin/v1/register"
    status, nonce = http("GET", url)
    assert status == 200, f"GET {url}: {status} {nonce}"
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update("\x00".join([nonce["nonce"], localpart, PASSWORD, "admin" if admin else "notadmin"]).encode())
    body = {
        "nonce": nonce["nonce"],
        "username": localpart,
        "password": PASSWORD,
        "admin": admin,
        "mac": mac.hexdigest(),
    }
    status, resp = http("POST", url, body)
    assert status == 200, f"register {localpart}: {status} {resp}"
    return resp


def password_login(localpart: str) -> Dict[str, Any]:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": PASSWORD,
    }
    status, resp = http("POST", PUBLIC + "/_matrix/client/v3/login", body)
    assert status == 200, f"password login of {localpart} through nginx: {status} {resp}"
    return resp


def whoami(session: Dict[str, Any]) -> None:
    status, resp = http("GET", PUBLIC + "/_matrix/client/v3/account/whoami", token=session["access_token"])
    assert status == 200, f"whoami: {status} {resp}"
    assert resp["user_id"] == session["user_id"], f"whoami: {resp}"


def task_output(unit: str) -> str:
    machine.succeed(f"systemctl start {unit}.service")
    return machine.succeed(f"journalctl -u {unit}.service -o cat")


def login_is_answered_by_mas() -> None:
    status, flows = http("GET", PUBLIC + "/_matrix/client/v3/login")
    assert status == 200 and "flows" in flows, f"GET /login through nginx: {status} {flows}"
    # A delegating Synapse no longer serves it (docs/notes.md): only MAS can
    # have answered.
    status, resp = http("GET", SYNAPSE + "/_matrix/client/v3/login")
    assert status == 404, f"Synapse still serves /login: {status} {resp}"


start_all()
machine.wait_for_unit("masgen-rehearsal-secrets.service")
for unit in ["postgresql.service", "matrix-synapse.service", "matrix-authentication-service.service", "nginx.service"]:
    machine.wait_for_unit(unit)
if DATA["kind"] == "migration":
    # The final configuration, before a switch makes it the current one.
    FINAL = machine.succeed("readlink -f /run/current-system/specialisation/final").strip()

sessions: List[Dict[str, Any]] = []
if DATA["kind"] == "migration":
    with subtest("seed Synapse with users, devices and access tokens"):
        for user in DATA["users"]:
            sessions.append(register_in_synapse(user["localpart"], user["admin"]))
        if DATA["synapse_password_login"]:
            status, flows = http("GET", PUBLIC + "/_matrix/client/v3/login")
            assert status == 200, f"phase 1 /login through nginx: {status} {flows}"
            assert {"type": "m.login.password"} in flows["flows"], flows
            for user in DATA["users"]:
                sessions.append(password_login(user["localpart"]))
        for session in sessions:
            whoami(session)

for step in DATA["steps"]:
    run_step(step)

if DATA["kind"] == "migration":
    with subtest("the users are in MAS"):
        admins = task_output("masgen-rehearsal-list-admins")
        print(admins)
        for user in DATA["users"]:
            listed = f"username={user['localpart']}" in admins
            assert listed == user["admin"], f"{user['localpart']}: admin listing {admins}"
        for localpart in DATA["check_users"]:
            task_output(f"masgen-rehearsal-token-{localpart}")
    with subtest("the access tokens from before the migration still work"):
        for session in sessions:
            whoami(session)
else:
    with subtest("a user registered through MAS"):
        task_output("masgen-rehearsal-register")
        for localpart in DATA["check_users"]:
            task_output(f"masgen-rehearsal-token-{localpart}")

with subtest("/login is answered by MAS through nginx"):
    login_is_answered_by_mas()
    if DATA["mas_password_login"]:
        for localpart in DATA["check_users"]:
            whoami(password_login(localpart))

with subtest("mas-cli doctor passes"):
    print(task_output("masgen-mas-doctor"))
