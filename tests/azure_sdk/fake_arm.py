"""One fake of Azure's control and data planes for both sides of the differential test.

The SDK reaches it in-process (a recording azure-core transport); labhost reaches it over
HTTP (`serve`). Both get the same canned answers: a token, a default blob datastore with a
key, code versions that exist when asked by content hash (the SDK's lookup), environments and
data assets with one version, blobs that are accepted and not there, and every PUT echoed with
its ARM id. Each request is recorded as {method, path, query, body}.
"""
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUB = "0000aaaa-1111-2222-3333-444455556666"
RG = "rg-diff"
WS = "ws-diff"
WS_PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
# Azurite's well-known account key: the fake accepts any signature.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Fake:
    def __init__(self):
        self.log = []
        self.lock = threading.Lock()
        # Code versions that exist: found by hash (the SDK's lookup) or registered by PUT.
        self.codes = set()

    def handle(self, method, url, body):
        u = urllib.parse.urlsplit(url)
        path, query = u.path, dict(urllib.parse.parse_qsl(u.query))
        if ".blob." in (u.hostname or ""):
            # The SDK's storage client: the same blob fake under /blob/<account>.
            path = "/blob/" + u.hostname.split(".")[0] + path
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        with self.lock:
            self.log.append({"method": method, "path": path, "query": query, "body": parsed})
        return self.answer(method, path, query, parsed)

    def answer(self, method, path, query, body):
        if path.endswith("/oauth2/v2.0/token"):
            return 200, {"token_type": "Bearer", "expires_in": 3600, "access_token": "fake-token"}
        if path.startswith("/blob/"):
            # Blob data plane: uploads accepted, nothing found.
            if method == "PUT":
                return (200 if query.get("comp") == "metadata" else 201), {}
            return 404, {}
        if not path.startswith(WS_PATH):
            return 404, {"error": {"code": "ResourceNotFound", "message": path}}
        rest = path[len(WS_PATH):]
        if method == "PUT":
            if rest.startswith("/codes/"):
                self.codes.add(rest)
            out = dict(body or {})
            out["id"] = path
            out["name"] = path.rsplit("/", 1)[1]
            return 200, out
        if method == "POST" and rest.endswith("/listSecrets"):
            return 200, {"secretsType": "AccountKey", "key": KEY}
        if method == "GET" and rest.startswith("/datastores"):
            ds = {
                "id": WS_PATH + "/datastores/workspaceblobstore",
                "name": "workspaceblobstore",
                "properties": {
                    "datastoreType": "AzureBlob", "accountName": "acct", "containerName": "c",
                    "endpoint": "core.windows.net", "protocol": "https", "isDefault": True,
                    "credentials": {"credentialsType": "AccountKey"},
                },
            }
            return 200, ({"value": [ds]} if rest == "/datastores" else ds)
        if method == "GET" and rest.startswith("/codes/"):
            if rest.endswith("/versions") and "hash" in query:
                self.codes.add(rest + "/1")
                return 200, {"value": [self.code(rest + "/1")]}
            if rest in self.codes:
                return 200, self.code(rest)
            return 404, {"error": {"code": "UserError", "message": "not found"}}
        if method == "GET" and (rest.startswith("/environments/") or rest.startswith("/data/")):
            kind, name = rest.split("/")[1:3]
            ver = rest.split("/versions/")[1] if "/versions/" in rest else "7"
            v = {"id": f"{WS_PATH}/{kind}/{name}/versions/{ver}", "name": ver,
                 "properties": {"image": "mcr.microsoft.com/azureml/curated:7"} if kind == "environments"
                 else {"dataUri": "azureml://datastores/workspaceblobstore/paths/data/", "dataType": "uri_folder"}}
            return 200, ({"value": [v]} if rest.endswith("/versions") else v)
        if method == "GET" and rest.startswith("/computes/"):
            return 200, {"id": path, "name": rest.split("/")[2], "location": "westeurope",
                         "properties": {"computeType": "AmlCompute", "computeLocation": "westeurope",
                                        "properties": {"vmSize": "STANDARD_DS3_V2", "vmPriority": "Dedicated",
                                                       "subnet": None, "osType": "Linux",
                                                       "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0}}}}
        return 404, {"error": {"code": "UserError", "message": f"{method} {rest}: not in the fake"}}

    def code(self, rest):
        return {"id": WS_PATH + rest, "name": rest.rsplit("/", 1)[1],
                "properties": {"codeUri": "https://acct.blob.core.windows.net/c/LocalUpload/h/src",
                               "isAnonymous": True}}


def serve(fake):
    """An HTTP server on loopback answering from `fake`; returns (server, base URL)."""

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def go(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            status, out = fake.handle(self.command, self.path, body)
            data = json.dumps(out).encode() if out else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.path.startswith("/blob/") and status < 300:
                # What the Blob service answers every write with.
                self.send_header("ETag", '"0x8DC0000000000000"')
                self.send_header("Last-Modified", "Sat, 05 Dec 2026 10:00:00 GMT")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = go

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"
