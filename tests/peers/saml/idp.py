#!/usr/bin/env python3
"""A test SAML 2.0 identity provider for Portcullis, built on pysaml2.

It is a peer for tests only: it signs with keys it generates at start-up, it logs
everyone in as one test user, and it accepts query flags that make it misbehave on
purpose so that the service provider's negative tests use real, signed responses.

    idp.py --sp-metadata FILE [--port 0]

It binds 127.0.0.1 (port 0 = any free port), then prints one line
`READY http://127.0.0.1:<port>` on stdout. The SP metadata file is read on every
request, so it may be written after the IdP started (the SP needs the IdP's metadata
first).

Endpoints:
  GET /metadata          the IdP's metadata (entity id = this URL), signing cert only
  GET /sso               HTTP-Redirect binding: SAMLRequest [, RelayState]; answers with
                         the HTML auto-submit form carrying a signed SAMLResponse
  GET /unsolicited?sp=ENTITY_ID
                         an IdP-initiated response (no InResponseTo) for that SP

Test flags (query parameters on /sso and /unsolicited):
  test_key=other         sign with a second key that is NOT in the metadata
  test_alg=sha1          rsa-sha1 signature with a sha1 digest
  test_sign=assertion|response|both|none   what to sign (default: assertion)
  test_shift_secs=N      shift every timestamp by N seconds (an IdP clock N s off)
  test_lifetime_secs=N   validity of Conditions and SubjectConfirmationData (default 300)
  test_nameid=TEXT       NameID value (default: the test user's persistent id)
  test_audience=ENTITY   Audience to put in the AudienceRestriction (default: the SP;
                         `none` leaves the AudienceRestriction out)
  test_recipient=URL     Recipient and Destination (default: the SP's ACS URL)
"""

import argparse
import base64
import datetime
import html
import os
import re
import shutil
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, class_name
from saml2.assertion import Policy
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.sigver import pre_signature_part, signed_instance_factory
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

TEST_USER = {
    "persistent_id": "u-4f1c2a9e-alice",
    "identity": {
        "mail": ["alice@example.com"],
        "displayName": ["Alice Example"],
        "isMemberOf": ["engineering", "admins"],
    },
}
AUTHN_CONTEXT_MFA = "https://refeds.org/profile/mfa"
TIME_ATTRIBUTES = re.compile(
    r'\b(IssueInstant|NotBefore|NotOnOrAfter|AuthnInstant|SessionNotOnOrAfter)="([^"]+)"'
)


def generate_key_pair(directory, name):
    """A throw-away RSA-2048 key and self-signed certificate, written as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"portcullis test idp {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, f"{name}.key.pem")
    cert_path = os.path.join(directory, f"{name}.cert.pem")
    with open(key_path, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class Idp:
    def __init__(self, base_url, sp_metadata, key_dir):
        self.base_url = base_url
        self.sp_metadata = sp_metadata
        self.keys = {
            "idp": generate_key_pair(key_dir, "idp-signing"),
            "other": generate_key_pair(key_dir, "not-in-metadata"),
        }

    def config(self, key_name, with_sp=True):
        key_file, cert_file = self.keys[key_name]
        conf = {
            "entityid": f"{self.base_url}/metadata",
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(f"{self.base_url}/sso", BINDING_HTTP_REDIRECT)],
                    },
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "want_authn_requests_signed": False,
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                        }
                    },
                }
            },
            "key_file": key_file,
            "cert_file": cert_file,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "delete_tmpfiles": True,
        }
        if with_sp:
            conf["metadata"] = {"local": [self.sp_metadata]}
        config = IdPConfig()
        config.load(conf)
        return config

    def metadata(self):
        return str(entity_descriptor(self.config("idp", with_sp=False)))

    def response(self, flags, in_response_to, destination, sp_entity_id):
        """A SAMLResponse (XML text) for the test user, shaped by the test flags."""
        key_name = "other" if flag(flags, "test_key") == "other" else "idp"
        server = Server(config=self.config(key_name))
        lifetime = int(flag(flags, "test_lifetime_secs") or 300)
        destination = flag(flags, "test_recipient") or destination
        name_id = NameID(
            format=NAMEID_FORMAT_PERSISTENT,
            text=flag(flags, "test_nameid") or TEST_USER["persistent_id"],
        )
        policy = Policy(
            {
                "default": {
                    "lifetime": {"seconds": lifetime},
                    "attribute_restrictions": None,
                    "name_form": NAME_FORMAT_URI,
                }
            },
            server.metadata,
        )
        response = server.create_authn_response(
            identity=TEST_USER["identity"],
            in_response_to=in_response_to,
            destination=destination,
            sp_entity_id=sp_entity_id,
            name_id=name_id,
            authn={"class_ref": AUTHN_CONTEXT_MFA},
            sign_response=False,
            sign_assertion=False,
            release_policy=policy,
        )
        if flag(flags, "test_audience") == "none":
            response.assertion.conditions.audience_restriction = []
        elif flag(flags, "test_audience"):
            for restriction in response.assertion.conditions.audience_restriction:
                for audience in restriction.audience:
                    audience.text = flag(flags, "test_audience")

        sign_alg, digest_alg = (SIG_RSA_SHA256, DIGEST_SHA256)
        if flag(flags, "test_alg") == "sha1":
            sign_alg, digest_alg = (SIG_RSA_SHA1, DIGEST_SHA1)
        what = flag(flags, "test_sign") or "assertion"
        to_sign = []
        if what in ("assertion", "both"):
            response.assertion.signature = pre_signature_part(
                response.assertion.id,
                server.sec.my_cert,
                1,
                sign_alg=sign_alg,
                digest_alg=digest_alg,
            )
            to_sign.append((class_name(response.assertion), response.assertion.id))
        if what in ("response", "both"):
            response.signature = pre_signature_part(
                response.id,
                server.sec.my_cert,
                2,
                sign_alg=sign_alg,
                digest_alg=digest_alg,
            )
            to_sign.append((class_name(response), response.id))

        xml = response.to_string().decode()
        shift = int(flag(flags, "test_shift_secs") or 0)
        if shift:
            xml = TIME_ATTRIBUTES.sub(lambda m: f'{m.group(1)}="{shifted(m.group(2), shift)}"', xml)
        if not to_sign:
            return xml
        # The assertion is signed first (it is inside the response), then the response.
        return signed_instance_factory(xml, server.sec, to_sign)

    def sp_acs(self, sp_entity_id):
        server = Server(config=self.config("idp"))
        for service in server.metadata.assertion_consumer_service(sp_entity_id, BINDING_HTTP_POST):
            return service["location"]
        raise LookupError(f"no HTTP-POST ACS for {sp_entity_id}")


def shifted(timestamp, seconds):
    parsed = datetime.datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S")
    return (parsed + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def flag(flags, name):
    values = flags.get(name)
    return values[0] if values else None


def post_form(action, saml_response_xml, relay_state):
    encoded = base64.b64encode(saml_response_xml.encode()).decode()
    relay = (
        f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}"/>' if relay_state else ""
    )
    return (
        "<!DOCTYPE html><html><body onload=\"document.forms[0].submit()\">"
        f'<form method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="SAMLResponse" value="{encoded}"/>{relay}'
        '<noscript><input type="submit" value="Continue"/></noscript></form></body></html>'
    )


def handler_for(idp):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("idp: " + (fmt % args) + "\n")

        def reply(self, status, content_type, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            flags = parse_qs(url.query)
            try:
                if url.path == "/metadata":
                    self.reply(200, "application/samlmetadata+xml", idp.metadata())
                elif url.path == "/sso":
                    self.sso(flags)
                elif url.path == "/unsolicited":
                    sp_entity_id = flag(flags, "sp")
                    acs = idp.sp_acs(sp_entity_id)
                    xml = idp.response(flags, None, acs, sp_entity_id)
                    self.reply(200, "text/html", post_form(acs, xml, ""))
                else:
                    self.reply(404, "text/plain", "not found")
            except Exception as error:  # a test peer: say what went wrong
                self.reply(500, "text/plain", f"idp error: {error!r}")

        def sso(self, flags):
            saml_request = flag(flags, "SAMLRequest")
            relay_state = flag(flags, "RelayState") or ""
            server = Server(config=idp.config("idp"))
            request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message
            args = server.response_args(request, [BINDING_HTTP_POST])
            xml = idp.response(flags, args["in_response_to"], args["destination"], args["sp_entity_id"])
            self.reply(200, "text/html", post_form(args["destination"], xml, relay_state))

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sp-metadata", required=True)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    key_dir = tempfile.mkdtemp(prefix="portcullis-test-idp-")
    httpd = ThreadingHTTPServer(("127.0.0.1", options.port), BaseHTTPRequestHandler)
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.RequestHandlerClass = handler_for(Idp(base_url, options.sp_metadata, key_dir))
    print(f"READY {base_url}", flush=True)
    try:
        httpd.serve_forever()
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
