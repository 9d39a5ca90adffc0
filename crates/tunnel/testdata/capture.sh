#!/usr/bin/env bash
# Records what real proxies answer to CONNECT (Squid, tinyproxy, mitmproxy) and to SOCKS5
# (microsocks), byte for byte, into connect/*.bin and socks5/*.bin beside this script. The unit
# tests in crates/tunnel/src/connect.rs and socks5.rs parse every prefix of each file.
#
#   crates/tunnel/testdata/capture.sh        needs squid, tinyproxy, mitmdump, microsocks, python3
#
# Everything runs on 127.0.0.1 with free ports, in a temporary directory that is removed at the end;
# each proxy is stopped by its own pid. The CONNECT targets are a local listener (accepts, then
# holds the connection) and a port nothing listens on. Proxy replies carry dates, versions and
# host names, so a new capture differs from the committed one in those bytes only; re-run it
# after upgrading a proxy and adjust the expected values in the tests if the framing changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in squid tinyproxy mitmdump microsocks python3 openssl; do
  command -v "$tool" >/dev/null || { echo "capture.sh: $tool is not installed" >&2; exit 1; }
done
work=$(mktemp -d /tmp/uplink-capture.XXXXXX)
chmod 777 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work" /dev/shm/uplinkcap*-* 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$here/connect" "$here/socks5"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until something accepts on 127.0.0.1:$1, failing after 30 s (or when pid $2 has exited).
wait_port() {
  python3 - "$1" <<'PY' || { echo "capture.sh: nothing accepts on port $1 (see $work)" >&2; exit 1; }
import socket, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

# The client: sends $3 (Python bytes literal; may hold several messages separated by the word
# THEN, each sent after the previous answer is complete) to 127.0.0.1:$2 and writes everything
# the proxy answered to the last message into $1. Answers are read by their framing (HTTP: the
# head, then Content-Length, chunks or until close; SOCKS5: by the message's own lengths), with
# a 10-second bound that fails the capture.
capture() {
  python3 - "$@" <<'PY'
import ast, socket, sys
out, port, script, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
messages = [ast.literal_eval(m.strip()) for m in script.split(" THEN ")]
s = socket.create_connection(("127.0.0.1", port), 10)
s.settimeout(10)
buf = b""

def more():
    global buf
    chunk = s.recv(65536)
    if not chunk:
        raise EOFError
    buf += chunk

def need(n):
    while len(buf) < n:
        more()

def http_reply():
    while b"\r\n\r\n" not in buf:
        more()
    head_len = buf.index(b"\r\n\r\n") + 4
    head = buf[:head_len].decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    if 200 <= status < 300:
        return head_len
    lines = head.split("\r\n")
    if any(l.startswith("transfer-encoding:") and "chunked" in l for l in lines):
        at = head_len
        while True:
            while b"\r\n" not in buf[at:]:
                more()
            end = buf.index(b"\r\n", at)
            size = int(buf[at:end].split(b";")[0], 16)
            at = end + 2
            if size == 0:
                while b"\r\n" not in buf[at:]:
                    more()
                while buf[at:at + 2] != b"\r\n":
                    at = buf.index(b"\r\n", at) + 2
                    while b"\r\n" not in buf[at:]:
                        more()
                return at + 2
            need(at + size + 2)
            at += size + 2
    for l in lines:
        if l.startswith("content-length:"):
            n = head_len + int(l.split(":", 1)[1])
            need(n)
            return n
    try:
        while True:
            more()
    except EOFError:
        return len(buf)

def socks_reply(step):
    if step in ("method", "auth"):
        need(2)
        return 2
    need(2)
    if buf[1] != 0:
        # A failure: take what the server sends before it closes (microsocks sends the whole
        # reply with a zero address, then closes).
        try:
            while len(buf) < 10:
                more()
        except EOFError:
            pass
        return len(buf)
    need(5)
    atyp = buf[3]
    n = {1: 4 + 4 + 2, 4: 4 + 16 + 2, 3: 5 + buf[4] + 2}[atyp]
    need(n)
    return n

steps = kind.split(",")
for i, msg in enumerate(messages):
    s.sendall(msg)
    used = http_reply() if steps[i] == "http" else socks_reply(steps[i])
    answer, buf = buf[:used], buf[used:]
open(out, "wb").write(answer)
print("%-44s %5d bytes  %r" % (out.split("/testdata/")[-1], len(answer), answer[:60]))
PY
}

# The CONNECT target: accepts and holds connections until the script ends.
target_port=$(free_port)
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    held.append(s.accept()[0])
' "$target_port" &
pids+=($!)
closed_port=$(free_port)   # nothing listens here
wait_port "$target_port"
connect_to() { printf "b'CONNECT %s HTTP/1.1\\\\r\\\\nHost: %s\\\\r\\\\nUser-Agent: uplink-capture\\\\r\\\\n%s\\\\r\\\\n'" "$1" "$1" "${2:-}"; }

# --- Squid: an open instance (200, 403 for a port outside the allowed ones, 503 for a closed
# port) and one asking for Basic, Digest and NTLM (the first 407, NTLM's challenge 407, a 200
# after Basic).
squid_conf() { # dir port auth?
  local d=$1 port=$2
  cat <<CONF
http_port 127.0.0.1:$port
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log stdio:$d/access.log
cache deny all
cache_mem 8 MB
coredump_dir $d
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
acl CONNECT method CONNECT
acl allowed_ports port $target_port $closed_port
http_access deny CONNECT !allowed_ports
CONF
  if [ "${3:-}" = auth ]; then
    cat <<CONF
auth_param basic program /usr/lib/squid/basic_ncsa_auth $d/passwd
auth_param basic realm uplink-capture
auth_param digest program /usr/lib/squid/digest_file_auth $d/digest_passwd
auth_param digest realm uplink-capture
auth_param ntlm program /usr/lib/squid/ntlm_fake_auth
auth_param ntlm keep_alive on
acl authed proxy_auth REQUIRED
http_access allow CONNECT authed
CONF
  else
    echo "http_access allow CONNECT"
  fi
  echo "http_access deny all"
}
start_squid() { # name auth? -> sets squid_port
  local d=$work/$1
  mkdir -p "$d"; chmod 777 "$d"
  squid_port=$(free_port)
  echo "capture:$(openssl passwd -apr1 secret)" >"$d/passwd"
  echo "capture:secret" >"$d/digest_passwd"
  chmod 644 "$d/passwd" "$d/digest_passwd"
  squid_conf "$d" "$squid_port" "${2:-}" >"$d/squid.conf"
  squid -N -n "uplinkcap$squid_port" -f "$d/squid.conf" </dev/null >/dev/null 2>"$d/stderr.log" &
  pids+=($!)
  wait_port "$squid_port"
}
start_squid squid-open
capture "$here/connect/squid-200.bin" "$squid_port" "$(connect_to "127.0.0.1:$target_port")" http
capture "$here/connect/squid-403-access-denied.bin" "$squid_port" "$(connect_to "127.0.0.1:1")" http
capture "$here/connect/squid-503-connect-fail.bin" "$squid_port" "$(connect_to "127.0.0.1:$closed_port")" http
start_squid squid-auth auth
capture "$here/connect/squid-407-basic-digest-ntlm.bin" "$squid_port" "$(connect_to "127.0.0.1:$target_port")" http
# NTLM Type 1 (negotiate; the flags ntlm_fake_auth accepts), then Squid's 407 with the Type 2.
ntlm1=TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==
capture "$here/connect/squid-407-ntlm-challenge.bin" "$squid_port" \
  "$(connect_to "127.0.0.1:$target_port" "Proxy-Authorization: NTLM $ntlm1\\r\\n")" http
capture "$here/connect/squid-200-after-basic.bin" "$squid_port" \
  "$(connect_to "127.0.0.1:$target_port" "Proxy-Authorization: Basic $(printf capture:secret | base64)\\r\\n")" http
capture "$here/connect/squid-407-bad-basic.bin" "$squid_port" \
  "$(connect_to "127.0.0.1:$target_port" "Proxy-Authorization: Basic $(printf capture:wrong | base64)\\r\\n")" http

# --- tinyproxy: 200, 403 (ConnectPort forbids the port), 500 (the target refuses), and 407
# from an instance with BasicAuth.
start_tinyproxy() { # name extra-config -> sets tiny_port
  local d=$work/$1
  mkdir -p "$d"; chmod 777 "$d"
  tiny_port=$(free_port)
  {
    echo "Port $tiny_port"
    echo "Listen 127.0.0.1"
    echo "Timeout 30"
    echo "Allow 127.0.0.1"
    echo "LogFile \"$d/tinyproxy.log\""
    echo "LogLevel Info"
    echo "MaxClients 10"
    echo "ConnectPort $target_port"
    echo "ConnectPort $closed_port"
    echo "$2"
  } >"$d/tinyproxy.conf"
  tinyproxy -d -c "$d/tinyproxy.conf" </dev/null >/dev/null 2>"$d/stderr.log" &
  pids+=($!)
  wait_port "$tiny_port"
}
start_tinyproxy tinyproxy-open ""
capture "$here/connect/tinyproxy-200.bin" "$tiny_port" "$(connect_to "127.0.0.1:$target_port")" http
capture "$here/connect/tinyproxy-403-connect-port.bin" "$tiny_port" "$(connect_to "127.0.0.1:1")" http
capture "$here/connect/tinyproxy-500-connect-fail.bin" "$tiny_port" "$(connect_to "127.0.0.1:$closed_port")" http
capture "$here/connect/tinyproxy-400-bad-request.bin" "$tiny_port" "b'CONNECT nonsense\\r\\n\\r\\n'" http
start_tinyproxy tinyproxy-auth "BasicAuth capture secret"
capture "$here/connect/tinyproxy-407-basic.bin" "$tiny_port" "$(connect_to "127.0.0.1:$target_port")" http

# --- mitmproxy (mitmdump, regular mode, connecting upstream before it answers): 200, and 502
# when the target refuses.
mitm_port=$(free_port)
mkdir -p "$work/mitm"
mitmdump --mode regular --listen-host 127.0.0.1 --listen-port "$mitm_port" \
  --set confdir="$work/mitm" --set connection_strategy=eager </dev/null >"$work/mitm/out.log" 2>&1 &
pids+=($!)
wait_port "$mitm_port"
capture "$here/connect/mitmproxy-200.bin" "$mitm_port" "$(connect_to "127.0.0.1:$target_port")" http
capture "$here/connect/mitmproxy-502-connect-fail.bin" "$mitm_port" "$(connect_to "127.0.0.1:$closed_port")" http

# --- microsocks: method selection (no auth; username/password; none acceptable), the RFC 1929
# answers, and CONNECT replies (success, refused, a name that does not resolve).
socks_port=$(free_port)
microsocks -i 127.0.0.1 -p "$socks_port" >"$work/microsocks.log" 2>&1 &
pids+=($!)
socks_auth_port=$(free_port)
microsocks -i 127.0.0.1 -p "$socks_auth_port" -u capture -P secret >"$work/microsocks-auth.log" 2>&1 &
pids+=($!)
wait_port "$socks_port"
wait_port "$socks_auth_port"
tp_hex=$(printf '\\x%02x\\x%02x' $((target_port >> 8)) $((target_port & 255)))
cp_hex=$(printf '\\x%02x\\x%02x' $((closed_port >> 8)) $((closed_port & 255)))
capture "$here/socks5/microsocks-method-noauth.bin" "$socks_port" "b'\\x05\\x01\\x00'" method
capture "$here/socks5/microsocks-method-userpass.bin" "$socks_auth_port" "b'\\x05\\x02\\x00\\x02'" method
capture "$here/socks5/microsocks-method-none-acceptable.bin" "$socks_auth_port" "b'\\x05\\x01\\x00'" method
capture "$here/socks5/microsocks-auth-ok.bin" "$socks_auth_port" \
  "b'\\x05\\x01\\x02' THEN b'\\x01\\x07capture\\x06secret'" method,auth
capture "$here/socks5/microsocks-auth-fail.bin" "$socks_auth_port" \
  "b'\\x05\\x01\\x02' THEN b'\\x01\\x07capture\\x05wrong'" method,auth
capture "$here/socks5/microsocks-connect-ok-ipv4.bin" "$socks_port" \
  "b'\\x05\\x01\\x00' THEN b'\\x05\\x01\\x00\\x01\\x7f\\x00\\x00\\x01$tp_hex'" method,connect
capture "$here/socks5/microsocks-connect-ok-domain.bin" "$socks_port" \
  "b'\\x05\\x01\\x00' THEN b'\\x05\\x01\\x00\\x03\\x09localhost$tp_hex'" method,connect
capture "$here/socks5/microsocks-connect-refused.bin" "$socks_port" \
  "b'\\x05\\x01\\x00' THEN b'\\x05\\x01\\x00\\x01\\x7f\\x00\\x00\\x01$cp_hex'" method,connect
capture "$here/socks5/microsocks-connect-unresolvable.bin" "$socks_port" \
  "b'\\x05\\x01\\x00' THEN b'\\x05\\x01\\x00\\x03\\x0fnothing.invalid$tp_hex'" method,connect
capture "$here/socks5/microsocks-connect-after-auth.bin" "$socks_auth_port" \
  "b'\\x05\\x01\\x02' THEN b'\\x01\\x07capture\\x06secret' THEN b'\\x05\\x01\\x00\\x01\\x7f\\x00\\x00\\x01$tp_hex'" method,auth,connect
echo "capture.sh: done ($(date -u +%Y-%m-%dT%H:%MZ); squid $(squid -v | sed -n 's/.*Version //p'), $(tinyproxy -v), mitmproxy $(mitmdump --version | sed -n 's/Mitmproxy: //p'), microsocks $(dpkg-query -W -f '${Version}' microsocks 2>/dev/null || echo unknown))"
