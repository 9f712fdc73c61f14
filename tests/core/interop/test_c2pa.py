"""Content Credentials: the certificates `keys init` makes, signed exports validated by
c2pa-python's own Reader, manifests whose actions follow the lineage, and Strata without
c2pa-python."""

from __future__ import annotations

import builtins
import io
import json
from pathlib import Path
from typing import Any

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from strata.core.errors import InvalidInput
from strata.core.interop import c2pa_credentials
from strata.core.interop.export import export
from strata.core.layers import build_executors, compositing, enhancement
from strata.core.provenance.keys import init_keys, key_paths
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.core.interop.test_export import generate
from tests.helpers import png_bytes

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


def home(strata: Strata) -> Path:
    return strata.store.settings.resolved_home


def reader(path: Path, anchor: str | None) -> tuple[str, dict[str, Any]]:
    """c2pa-python's own verdict and the active manifest, with `anchor` trusted or none."""
    settings = ({"trust": {"user_anchors": anchor}, "verify": {"verify_trust": True}}
                if anchor else {})
    with c2pa.Reader("image/png", io.BytesIO(path.read_bytes()),
                     context=c2pa.Context.from_dict(settings)) as read:
        store = json.loads(read.json())
        return str(read.get_validation_state()), store["manifests"][store["active_manifest"]]


def actions(manifest: dict[str, Any]) -> list[tuple[str, str | None]]:
    (listed,) = [a["data"]["actions"] for a in manifest["assertions"]
                 if a["label"] == "c2pa.actions.v2"]
    return [(a["action"], a.get("digitalSourceType")) for a in listed]


def run(strata: Strata, request: Any) -> str:
    jobs.request(strata, request)
    (made,) = Worker(strata, build_executors()).wait_for(request.job_id)["outputs"]
    return str(made)


def test_keys_init_makes_a_local_ca_and_an_es256_signing_certificate(tmp_path: Path) -> None:
    init_keys(tmp_path, "strata.example/studio")
    ca_path, chain_path, key_path = c2pa_credentials.credential_paths(tmp_path)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    leaf, issuer = x509.load_pem_x509_certificates(chain_path.read_bytes())
    assert issuer == ca and leaf.issuer == ca.subject
    assert leaf.version == x509.Version.v3 and ca.version == x509.Version.v3
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.EMAIL_PROTECTION]
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    leaf.verify_directly_issued_by(ca)
    assert "strata.example/studio" in leaf.subject.rfc4514_string()
    assert key_path.stat().st_mode & 0o077 == 0
    with pytest.raises(InvalidInput, match="already has a key"):
        init_keys(tmp_path)
    assert x509.load_pem_x509_certificate(ca_path.read_bytes()) == ca  # untouched


def test_a_key_made_before_content_credentials_gets_only_the_certificate(
    tmp_path: Path,
) -> None:
    verifier = init_keys(tmp_path, "strata.example/old")
    private, public = key_paths(tmp_path)
    key_before = private.read_bytes()
    for path in c2pa_credentials.credential_paths(tmp_path):
        path.unlink()  # as a store keyed before this version has it
    with pytest.raises(InvalidInput, match=r"named 'strata\.example/old', not"):
        init_keys(tmp_path, "strata.example/other")
    assert init_keys(tmp_path) == verifier  # the key stays; checkpoints still verify
    assert private.read_bytes() == key_before and public.exists()
    _, chain_path, _ = c2pa_credentials.credential_paths(tmp_path)
    leaf, _ = x509.load_pem_x509_certificates(chain_path.read_bytes())
    assert "strata.example/old" in leaf.subject.rfc4514_string()
    with pytest.raises(InvalidInput, match="already has a key"):
        init_keys(tmp_path)


def test_a_signed_generation_is_valid_and_trusted_with_the_local_ca(tiny: Strata,
                                                                    tmp_path: Path) -> None:
    init_keys(home(tiny))
    made = generate(tiny)
    target = tmp_path / "fox.png"
    assert export(tiny, made, target, c2pa=True).c2pa
    anchor = c2pa_credentials.local_anchor(home(tiny))
    assert reader(target, None)[0] == "Valid"  # signature holds; signer not yet trusted
    state, manifest = reader(target, anchor)
    assert state == "Trusted"
    assert actions(manifest) == [("c2pa.created", TRAINED)]
    (strata_assertion,) = [a for a in manifest["assertions"]
                           if a["label"] == "org.strata.provenance"]
    assert strata_assertion["data"]["asset"] == made
    with Image.open(target) as image:  # the embedded texts survive the signing
        assert image.info["parameters"].startswith("a red fox")
        assert json.loads(image.info["strata"])["asset"] == made
    # verify-file's reading agrees, and signed bytes are kept for later exports
    read = c2pa_credentials.read(target, anchor)
    assert read.state == "Trusted" and read.failures == []
    (event,) = tiny.ledger.read_all(types=["asset.exported"])
    assert tiny.blobs.read_bytes(event.data["exported_digest"]) == target.read_bytes()

    # One byte of the picture changed after signing: the hard binding no longer holds.
    data = bytearray(target.read_bytes())
    data[data.index(b"IDAT") + 12] ^= 0xFF
    target.write_bytes(bytes(data))
    tampered = c2pa_credentials.read(target, anchor)
    assert tampered.state == "Invalid"
    assert any("mismatch" in f["code"] for f in tampered.failures)


def test_the_actions_follow_the_lineage_and_a_signed_ancestor_is_the_parent(
        tiny: Strata, tmp_path: Path) -> None:
    init_keys(home(tiny))
    anchor = c2pa_credentials.local_anchor(home(tiny))
    made = generate(tiny)
    enhanced = run(tiny, enhancement.build_request(
        tiny, made, [{"op": "auto-contrast"}, {"op": "upscale", "factor": 2},
                     {"op": "sharpen", "radius": 1, "amount": 1}]))
    logo = tmp_path / "logo.png"
    logo.write_bytes(png_bytes(3, (16, 16)))
    (imported,) = tiny.add_files([logo])
    composite = run(tiny, compositing.build_request(
        tiny, [enhanced, imported.data["asset"]["digest"] + ":4,4"]))

    export(tiny, composite, tmp_path / "mixed.png", c2pa=True)
    state, manifest = reader(tmp_path / "mixed.png", anchor)
    assert state == "Trusted"
    assert actions(manifest) == [
        ("c2pa.created", COMPOSITE), ("c2pa.color_adjustments", None),
        ("c2pa.resized", None), ("c2pa.filtered", None), ("c2pa.placed", None),
        ("c2pa.placed", None)]
    assert sorted(i["relationship"] for i in manifest["ingredients"]) == [
        "componentOf", "componentOf"]

    # Sign the generation, then the composite again: it opens from that signed export,
    # whose own manifest comes along; the steps before it are left to that manifest.
    export(tiny, made, tmp_path / "fox.png", c2pa=True)
    export(tiny, composite, tmp_path / "again.png", c2pa=True)
    with c2pa.Reader("image/png", io.BytesIO((tmp_path / "again.png").read_bytes())) as read:
        store = json.loads(read.json())
    manifest = store["manifests"][store["active_manifest"]]
    assert [a for a, _ in actions(manifest)] == [
        "c2pa.opened", "c2pa.color_adjustments", "c2pa.resized", "c2pa.filtered",
        "c2pa.placed", "c2pa.placed"]
    (parent,) = [i for i in manifest["ingredients"] if i["relationship"] == "parentOf"]
    assert parent["title"] == "fox.png"
    assert actions(store["manifests"][parent["active_manifest"]]) == [
        ("c2pa.created", TRAINED)]


def test_without_c2pa_python_the_rest_works_and_signing_says_why(
        strata: Strata, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_c2pa(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "c2pa" or name.startswith("c2pa."):
            raise ImportError("libc2pa_c.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_c2pa)
    init_keys(home(strata))  # the certificates need only `cryptography`
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(4))
    (event,) = strata.add_files([source])
    digest = event.data["asset"]["digest"]
    before = strata.ledger.head_position()
    with pytest.raises(InvalidInput, match=r"need c2pa-python.*strata\[c2pa\]"):
        export(strata, digest, tmp_path / "signed.png", c2pa=True)
    assert strata.ledger.head_position() == before
    assert not (tmp_path / "signed.png").exists()
    with pytest.raises(InvalidInput, match="need c2pa-python"):
        c2pa_credentials.read(source, None)
    assert export(strata, digest, tmp_path / "plain.png").format == "png"
