"""Content Credentials (C2PA): the store's signing certificate, manifests that follow an
asset's lineage, and reading them back.

`strata keys init` makes, beside the checkpoint key, a local certificate authority and an
end-entity certificate issued by it (X.509 v3, ECDSA P-256 for ES256, extended key usage
emailProtection: C2PA validators refuse a bare self-signed leaf). Everything is offline:
no timestamp authority, no network. The CA's private key signs the one end-entity
certificate and is then thrown away, so nothing else can ever be issued under it. Files,
in the store folder beside the checkpoint key:

- `c2pa-ca.pem`: the CA certificate — give it to a validator as a trust anchor;
- `c2pa-signer.pem`: the end-entity certificate followed by the CA's (the chain a
  manifest carries);
- `c2pa-signer.key`: the end-entity private key (PKCS#8 PEM), mode 0600.

Checked with c2pa-python 0.38 (c2pa-rs 0.91): such a chain signs PNG, JPEG and WebP, the
Reader reports the manifest Valid, and Trusted once the CA is given as a user anchor.

The manifest's actions follow the lineage (`actions`). c2pa-python is imported only where
a manifest is signed or read (`require_c2pa`), so the rest of Strata works without it and
these two commands say why they cannot.
"""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strata.core.errors import InvalidInput, NotFound, VerificationFailed
from strata.core.ledger.event_types import short

if TYPE_CHECKING:  # `keys init` imports this module: it stays as light as the keys
    from strata.core.provenance.ancestry import Provenance, Step

CA_CERT_FILE = "c2pa-ca.pem"
SIGNER_CHAIN_FILE = "c2pa-signer.pem"
SIGNER_KEY_FILE = "c2pa-signer.key"
CA_YEARS = 20
SIGNER_YEARS = 10
PROVENANCE_LABEL = "org.strata.provenance"

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = IPTC + "trainedAlgorithmicMedia"
COMPOSITE_TRAINED = IPTC + "compositeWithTrainedAlgorithmicMedia"
# What an enhancement operation is, in C2PA's words.
ENHANCEMENT_ACTIONS = {
    "upscale": "c2pa.resized", "auto-contrast": "c2pa.color_adjustments",
    "white-balance": "c2pa.color_adjustments", "saturation": "c2pa.color_adjustments",
    "gamma": "c2pa.color_adjustments", "sharpen": "c2pa.filtered", "denoise": "c2pa.filtered",
}
# The editing layer's geometric operations; its diffusion operations are c2pa.edited.
EDIT_ACTIONS = {"crop": "c2pa.cropped", "rotate": "c2pa.orientation",
                "flip": "c2pa.orientation", "resize": "c2pa.resized"}
GENERATIVE_EDITS = frozenset({"inpaint", "erase", "outpaint", "img2img"})


# --- the certificates ------------------------------------------------------------------------


def credential_paths(home: Path) -> tuple[Path, Path, Path]:
    """The CA certificate, the signing chain and the signing key of a store."""
    return home / CA_CERT_FILE, home / SIGNER_CHAIN_FILE, home / SIGNER_KEY_FILE


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Strata")])


def _usage(*, sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not sign_certificates, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=sign_certificates, crl_sign=sign_certificates,
                         encipher_only=False, decipher_only=False)


def make_credentials(home: Path, origin: str) -> tuple[Path, Path, Path]:
    """Write a new local CA certificate and an ES256 signing certificate issued by it,
    named after the store's `origin`. The caller has checked that none of the files is
    there (each is created exclusively all the same)."""
    from strata.core.provenance.keys import write_new  # keys imports this module lazily

    now = datetime.datetime.now(datetime.UTC)
    # A minute of slack: a validator whose clock is a little behind still accepts it.
    start = now - datetime.timedelta(minutes=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"Strata local CA {origin}")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(sign_certificates=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(origin)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + datetime.timedelta(days=365 * SIGNER_YEARS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, chain_path, key_path = credential_paths(home)
    pem = serialization.Encoding.PEM
    write_new(key_path, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode(), 0o600)
    write_new(chain_path, (leaf.public_bytes(pem) + ca.public_bytes(pem)).decode(), 0o644)
    write_new(ca_path, ca.public_bytes(pem).decode(), 0o644)
    return ca_path, chain_path, key_path


def _signing_files(home: Path) -> tuple[bytes, bytes]:
    _, chain, key = credential_paths(home)
    try:
        return chain.read_bytes(), key.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no Content Credentials certificate at {chain}: run `strata keys "
                       "init` first") from None


def local_anchor(home: Path) -> str | None:
    """The store's CA certificate (PEM), trusted as a user anchor; None if it has none."""
    ca = credential_paths(home)[0]
    return ca.read_text(encoding="ascii") if ca.is_file() else None


# --- c2pa-python -----------------------------------------------------------------------------


def require_c2pa() -> ModuleType:
    """c2pa-python, or a clear refusal saying why it is not there."""
    try:
        import c2pa
    except ImportError as error:  # an OSError from its native library is reported as such
        raise InvalidInput(
            f"Content Credentials need c2pa-python, which cannot be imported here ({error}); "
            "install it with `pip install 'strata[c2pa]'` where its wheels exist — the rest "
            "of Strata works without it") from None
    return c2pa


def _context(c2pa: ModuleType, anchor: str | None) -> Any:
    # No thumbnails: optional in C2PA, and the SDK's JPEG of a 64x64 picture (and one per
    # ingredient) made a signed export over a hundred times the size of the picture.
    settings: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}
    if anchor is not None:
        settings.update(trust={"user_anchors": anchor}, verify={"verify_trust": True})
    return c2pa.Context.from_dict(settings)


# --- manifests that follow the lineage ---------------------------------------------------------


@dataclass(frozen=True)
class Ingredient:
    """A file a manifest names as an ingredient: the parent the export was opened from
    (an earlier signed export of an ancestor, or an imported original) or a placed layer."""

    digest: str  # the asset it stands for
    label: str
    relationship: str  # parentOf, componentOf
    media_type: str
    data: bytes
    title: str


def _action(name: str, step: Step, description: str, **extra: Any) -> dict[str, Any]:
    outputs = [o.digest for o in step.outputs]
    action: dict[str, Any] = {"action": name, "when": step.time, **extra}
    action["parameters"] = {**action.get("parameters", {}), "description": description,
                            "org.strata.step": step.id, "org.strata.outputs": outputs}
    if step.executor:
        action["softwareAgent"] = {"name": f"Strata {step.executor['name']}",
                                   "version": step.executor["version"]}
    return action


def generated(step: Step) -> bool:
    """Whether a step made its pixels with a trained model."""
    if step.layer == "generation":
        return True
    if step.layer == "editing":
        return step.operation in GENERATIVE_EDITS
    if step.layer == "enhancement":
        return any(op.get("method") == "model" for op in step.parameters.get("operations", [])
                   if isinstance(op, dict))
    return False


def _step_actions(step: Step, placed: dict[str, Ingredient]) -> list[dict[str, Any]]:
    """The C2PA actions of one step made after the manifest's opening action."""
    what = f"{step.layer} {step.operation}"
    if step.kind == "import":
        return []  # imported material enters as an ingredient or the opening action
    if step.kind == "external":
        return [_action("c2pa.edited", step, f"{step.operation} (made outside Strata)")]
    if step.layer == "enhancement":
        operations = [op for op in step.parameters.get("operations", []) if isinstance(op, dict)]
        return [_action(ENHANCEMENT_ACTIONS.get(str(op.get("op")), "c2pa.edited"), step,
                        f"enhancement {op.get('op')}") for op in operations]
    if step.layer == "editing" and step.operation in EDIT_ACTIONS:
        return [_action(EDIT_ACTIONS[step.operation], step, what)]
    if step.layer == "compositing":
        layers = [i.digest for o in step.outputs for i in o.inputs if i.role == "layer"]
        actions = [_action("c2pa.placed", step, f"composite layer {short(d)}",
                           parameters={"ingredientIds": [placed[d].label]})
                   for d in dict.fromkeys(layers) if d in placed]
        return actions or [_action("c2pa.edited", step, what)]
    if generated(step):
        # A generative edit, or a generation that is not where the export began (only one
        # c2pa.created is allowed): what it added is trained-model material.
        return [_action("c2pa.edited", step, what, digitalSourceType=TRAINED)]
    return [_action("c2pa.edited", step, what)]  # any other layer, plug-ins included


def _descendants_of(found: Provenance, digest: str) -> set[str]:
    """`digest` and everything in the ancestry made from it."""
    made = {digest}
    for edge in sorted(found.edges, key=lambda e: found.step(e.step).position):
        if edge.input in made:
            made.add(edge.output)
    return made


def _ancestors_of(found: Provenance, digest: str) -> set[str]:
    """`digest` and everything in the ancestry it was made from."""
    inputs: dict[str, list[str]] = {}
    for edge in found.edges:
        inputs.setdefault(edge.output, []).append(edge.input)
    seen, todo = {digest}, [digest]
    while todo:
        for parent in inputs.get(todo.pop(), []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def actions(found: Provenance, parent: Ingredient | None,
            placed: dict[str, Ingredient]) -> list[dict[str, Any]]:
    """The actions of an asset's manifest, in the order the steps happened.

    It opens with `c2pa.opened` of `parent` when there is one (what made the parent is in
    the parent's own manifest, so only later steps follow), else with `c2pa.created`:
    trainedAlgorithmicMedia when all the material was generated, or
    compositeWithTrainedAlgorithmicMedia when generated and imported material are mixed.
    """
    steps = list(found.steps)
    if parent is not None:
        covered = _ancestors_of(found, parent.digest)
        steps = [s for s in steps if any(o.digest not in covered for o in s.outputs)]
        opening = {"action": "c2pa.opened",
                   "parameters": {"ingredientIds": [parent.label],
                                  "description": f"opened {short(parent.digest)}"}}
        return [opening, *(a for s in steps for a in _step_actions(s, placed))]
    first = next((s for s in steps if generated(s)), None)
    if first is None:
        raise InvalidInput("nothing in this ancestry was generated or imported")
    mixed = any(s.kind == "import" for s in steps)
    opening = _action("c2pa.created", first, f"{first.layer} {first.operation}",
                      digitalSourceType=COMPOSITE_TRAINED if mixed else TRAINED)
    return [opening, *(a for s in steps if s is not first for a in _step_actions(s, placed))]


def manifest(found: Provenance, title: str, media_type: str, version: str,
             parent: Ingredient | None, placed: dict[str, Ingredient]) -> dict[str, Any]:
    """The manifest definition of an export: the lineage's actions, and the whole
    provenance (the `json` format of `strata provenance`) as a Strata assertion."""
    return {
        "claim_generator_info": [{"name": "Strata", "version": version}],
        "title": title, "format": media_type,
        "assertions": [
            {"label": "c2pa.actions.v2",
             "data": {"actions": actions(found, parent, placed)}},
            {"label": PROVENANCE_LABEL, "data": found.to_json()},
        ],
    }


def sign(home: Path, definition: dict[str, Any], data: bytes, media_type: str,
         ingredients: Sequence[Ingredient]) -> bytes:
    """`data` with the manifest `definition` signed into it by the store's certificate.
    c2pa-python validates what it signed, and refuses (raises) a manifest it would not
    accept when reading."""
    c2pa = require_c2pa()
    chain, key = _signing_files(home)
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=key, ta_url=None)
    signed = io.BytesIO()
    try:
        with c2pa.Signer.from_info(info) as signer, \
                c2pa.Builder(definition, context=_context(c2pa, local_anchor(home))) as builder:
            for each in ingredients:
                builder.add_ingredient({"title": each.title, "relationship": each.relationship,
                                        "label": each.label}, each.media_type,
                                       io.BytesIO(each.data))
            builder.sign(signer, media_type, io.BytesIO(data), signed)
    except c2pa.C2paError as error:
        raise InvalidInput(f"c2pa could not sign this {media_type} export: {error}") from None
    return signed.getvalue()


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What a file's manifest store says, as c2pa-python's Reader validated it."""

    path: str
    state: str  # Invalid, Valid, Trusted
    anchored: bool  # a CA (the store's own) was given as a trust anchor
    active: dict[str, Any]
    store: dict[str, Any]  # the whole manifest store, as the Reader reports it
    failures: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "state": self.state, "anchored": self.anchored,
                "active_manifest": self.active, "failures": self.failures,
                "manifest_store": self.store}


def read(path: Path, anchor: str | None) -> Credentials:
    """Read and validate the manifest of the file at `path`, trusting `anchor` (a CA
    certificate in PEM: the store's local authority, `local_anchor`) as a user anchor."""
    c2pa = require_c2pa()
    if not path.is_file():
        raise InvalidInput(f"not a file: {path}")
    try:
        with path.open("rb") as stream:
            reader = c2pa.Reader.try_create(_mime(c2pa, path, stream), stream,
                                            context=_context(c2pa, anchor))
            if reader is None:
                raise NotFound(f"{path} carries no Content Credentials (no C2PA manifest)")
            with reader:
                store = json.loads(reader.json())
                state = reader.get_validation_state() or "Invalid"
                results = reader.get_validation_results() or {}
    except c2pa.C2paError as error:
        raise VerificationFailed(f"{path}: its C2PA manifest cannot be read: {error}") from None
    failures = list(results.get("activeManifest", {}).get("failure", []))
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    return Credentials(path=str(path), state=state, anchored=anchor is not None,
                       active=active, store=store, failures=failures)


def _mime(c2pa: ModuleType, path: Path, stream: io.BufferedReader) -> str:
    """The file's media type from its bytes (the name may lie), as the store probes it."""
    from strata.core.storage.media import sniff_media_type

    media_type = sniff_media_type(stream.read(4096))
    stream.seek(0)
    if media_type not in c2pa.Reader.get_supported_mime_types():
        raise InvalidInput(f"{path}: c2pa cannot read {media_type} files")
    return media_type
