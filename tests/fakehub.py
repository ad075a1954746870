"""A Hugging Face hub on 127.0.0.1 serving one model folder: what huggingface_hub's snapshot_download
asks of the real hub (repo info, file tree, HEAD and GET of each file), so fetching is tested offline."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@contextlib.contextmanager
def serve(repo: str, folder: Path):
    """Serve ``folder`` as hub model ``repo``; yields the endpoint URL and the list of requests seen."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
    seen: list[str] = []

    class Hub(BaseHTTPRequestHandler):
        def _json(self, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, head: bool) -> None:
            prefix = f"/{repo}/resolve/"
            name = self.path[len(prefix):].split("/", 1)[-1] if self.path.startswith(prefix) else None
            data = files.get(name)
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def do_HEAD(self):  # noqa: N802 - http.server naming
            seen.append(f"HEAD {self.path}")
            self._file(head=True)

        def do_GET(self):  # noqa: N802
            seen.append(f"GET {self.path}")
            if self.path.startswith(f"/api/models/{repo}/tree/"):
                self._json([{"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                            for n, d in files.items()])
            elif self.path.startswith(f"/api/models/{repo}"):
                self._json({"id": repo, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]})
            else:
                self._file(head=False)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
