"""A real SMTP server on loopback for the end-to-end tests (aiosmtpd).

Usage: server.py PORT MAILDIR [CERT KEY]
Every message it accepts is written to MAILDIR/<n>.eml; it prints "ready" once it
listens and stops when its standard input closes. With CERT and KEY (PEM files) it
offers STARTTLS and refuses mail until the client has upgraded.
"""

import pathlib
import ssl
import sys
import threading

from aiosmtpd.controller import Controller


class Save:
    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            path = self.folder / f"{self.count}.eml"
        tmp = path.with_suffix(".tmp")
        rcpts = ",".join(envelope.rcpt_tos)
        tmp.write_bytes(f"X-Rcpt-To: {rcpts}\r\n".encode() + envelope.content)
        tmp.rename(path)
        return "250 OK"


def main() -> None:
    port = int(sys.argv[1])
    folder = pathlib.Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    tls = {}
    if len(sys.argv) == 5:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        tls = {"tls_context": context, "require_starttls": True}
    controller = Controller(Save(folder), hostname="127.0.0.1", port=port, **tls)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
