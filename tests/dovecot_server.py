"""A throwaway Dovecot IMAP server for the tests and the benchmark.

Each server lives in one folder: its config, run and state folders, its log,
the users' Maildirs, and TLS certificates issued by a CA made for this server
alone (with ``trustme``), so a test can check both a trusted and an untrusted
certificate. It listens on 127.0.0.1 only, on free ports: plain IMAP (STARTTLS
offered) and implicit TLS.

Used by tests/conftest.py and by bench/imap_sync.py (which puts tests/ on
sys.path), so both start Dovecot the same way.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"

# Maildir file names must be unique; a counter plus the pid is enough for
# files this process writes itself.
_names = itertools.count(1)


def dovecot_usable() -> tuple[bool, str]:
    """Can this machine run the throwaway server? (False, why) when it cannot."""
    if not (Path(DOVECOT).is_file() and os.access(DOVECOT, os.X_OK)):
        return False, "Dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return False, "the throwaway Dovecot needs root (its login processes switch users)"
    return True, ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class DovecotServer:
    """One Dovecot instance. ``start()`` / ``stop()`` may be called repeatedly (the ports stay)."""

    def __init__(self, users: dict[str, str], root: Path | None = None,
                 oauth2_introspection_url: str | None = None):
        import trustme  # test-only dependency; imported here so the module loads without it

        # Not under pytest's tmp_path: that is private to root (0700), and the
        # mail processes run as another user who must reach the Maildirs.
        self.root = Path(root or tempfile.mkdtemp(prefix="privacy-tracker-dovecot-"))
        self.users = dict(users)
        self.port = free_port()          # plain IMAP; STARTTLS offered
        self.tls_port = free_port()      # implicit TLS (imaps)
        self.process: subprocess.Popen | None = None

        # Dovecot refuses to serve mail as root: as root, the mail files belong to "nobody".
        if os.getuid() == 0:
            entry = pwd.getpwnam("nobody")
            self.mail_uid, self.mail_gid = entry.pw_uid, entry.pw_gid
        else:
            self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir(exist_ok=True)
        self.root.chmod(0o711)  # the mail processes must reach home/
        self.ca = trustme.CA()
        self.ca_file = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(self.root / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.root / "server.crt"))
        self.oauth2_introspection_url = oauth2_introspection_url
        self.log_file = self.root / "dovecot.log"
        self.config_file = self.root / "dovecot.conf"
        self._write_passwd()
        self._write_config()
        for user in self.users:
            self.maildir(user)  # an empty mailbox, owned by the mail user, for every user

    # ---- configuration ------------------------------------------------------

    def _write_passwd(self) -> None:
        lines = [f"{user}:{{PLAIN}}{password}::::::" for user, password in self.users.items()]
        (self.root / "passwd").write_text("\n".join(lines) + "\n")

    def _write_config(self) -> None:
        uid, gid = self.mail_uid, self.mail_gid
        root = self.root
        self.config_file.write_text(f"""\
# Throwaway test server (Dovecot 2.3 syntax). Nothing here is read from /etc/dovecot.
base_dir = {root}/run
state_dir = {root}/state
log_path = {self.log_file}
protocols = imap
listen = 127.0.0.1
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
ssl = yes
ssl_cert = <{root}/server.crt
ssl_key = <{root}/server.key
# Plain LOGIN without TLS only matters for the tls = "none" (loopback) case.
disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2" if self.oauth2_introspection_url else ""}
{self._oauth2_passdb()}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
# Benchmark mailboxes are large; do not fsync every index update.
mail_fsync = never
maildir_very_dirty_syncs = yes
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
""")

    def _oauth2_passdb(self) -> str:
        """XOAUTH2 logins: Dovecot asks the test's token introspection endpoint."""
        if not self.oauth2_introspection_url:
            return ""
        settings = self.root / "oauth2.conf.ext"
        settings.write_text(f"introspection_mode = post\n"
                            f"introspection_url = {self.oauth2_introspection_url}\n"
                            f"username_attribute = username\nactive_attribute = active\nactive_value = true\n")
        return f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n  args = {settings}\n}}\n"

    # ---- process ------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "dovecot.stderr", "ab"),
            start_new_session=True)
        if not (_wait_for_port(self.port, timeout) and _wait_for_port(self.tls_port, timeout)):
            self.stop()
            raise RuntimeError(f"dovecot did not start; see {self.log_file}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and every process it started: open IMAP connections drop at once.

        (Dovecot's master alone lets a running IMAP session finish its commands;
        a restarted or crashed server does not, and that is what the fault tests need.)
        """
        if self.process is None:
            return
        group = self.process.pid  # started in its own session: the group holds every Dovecot process
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            try:
                # Right after start-up the master can take seconds to exit (its login
                # processes wait for the stats service); a test server need not wait.
                self.process.wait(1.0 if sig == signal.SIGTERM else timeout)
            except subprocess.TimeoutExpired:
                continue
            try:  # the master is gone; its children may not be
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        self.process = None
        deadline = time.monotonic() + timeout
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def remove(self) -> None:
        """Stop the server and delete its folder, Maildirs included."""
        self.stop()
        for _attempt in range(3):  # a dying process may still write its last log line
            shutil.rmtree(self.root, ignore_errors=True)
            if not self.root.exists():
                break
            time.sleep(0.2)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- mailboxes ----------------------------------------------------------

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        home = self.root / "home" / user
        base = home / "Maildir"
        path = base if folder == "INBOX" else base / f".{folder.replace('/', '.')}"
        if not (path / "tmp").is_dir():
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            for directory in (home, base, path, path / "cur", path / "new", path / "tmp"):
                self._own(directory)
        return path

    def _own(self, path: Path) -> None:
        if os.getuid() == 0:
            os.chown(path, self.mail_uid, self.mail_gid)

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX", flags: str = "",
                received: float | None = None) -> Path:
        """Write one mail straight into the Maildir, as a delivery agent would.

        ``flags`` are Maildir letters (``S`` seen, ``F`` flagged, ...); ``received``
        (a Unix time) becomes the file's mtime, which Dovecot reports as INTERNALDATE.
        """
        folder_path = self.maildir(user, folder)
        name = f"{int(time.time())}.P{os.getpid()}Q{next(_names)}.test"
        tmp = folder_path / "tmp" / name
        tmp.write_bytes(raw)
        self._own(tmp)
        if received is not None:
            os.utime(tmp, (received, received))
        target = folder_path / "cur" / f"{name}:2,{''.join(sorted(flags))}"
        os.rename(tmp, target)
        return target

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Save a mail through Dovecot itself (like an IMAP APPEND): clients in IDLE hear of it."""
        self.doveadm("save", "-u", user, "-m", folder, input=raw)

    def doveadm(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        result = subprocess.run([DOVEADM, "-c", str(self.config_file), *args], input=input,
                                capture_output=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.decode().strip()}")
        return result.stdout.decode()

    def flags_of(self, user: str, folder: str = "INBOX") -> dict[int, str]:
        """UID -> flags, as the server sees them (read through doveadm, not IMAP)."""
        output = self.doveadm("fetch", "-u", user, "uid flags", "mailbox", folder)
        flags: dict[int, str] = {}
        uid = None
        for line in output.splitlines():
            if line.startswith("uid: "):
                uid = int(line.removeprefix("uid: "))
            elif line.startswith("flags:") and uid is not None:
                flags[uid] = line.removeprefix("flags:").strip()
        return flags

    def recreate_folder(self, user: str, folder: str) -> None:
        """Delete and create a folder again: the server gives it a new UIDVALIDITY."""
        self.doveadm("mailbox", "delete", "-u", user, folder)
        self.doveadm("mailbox", "create", "-u", user, folder)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
