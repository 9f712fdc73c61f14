"""The store's signing key, and signed notes (https://c2sp.org/signed-note) made with it.

A store signs its checkpoints with one Ed25519 key. The key's name is the store's
origin (the first line of every checkpoint, and the name on every signature line); it
is chosen once, at `strata keys init`, and lives in both key files, so it never changes
while the key does not.

Both key files use the text encodings of golang.org/x/mod/sumdb/note, so the public key
works unchanged with Go's `note.NewVerifier` and the tools built on it:

- private, `<store>/checkpoint.key`, mode 0600:
  ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>``
- public, `<store>/checkpoint.pub`: ``<name>+<key id>+<base64(0x01 || public key)>``

`init_keys` also makes the store's Content Credentials certificate under the same name
(core.interop.c2pa_credentials: a local CA and the ES256 certificate it issues).

where the key id is the first four bytes of SHA-256(name || 0x0A || 0x01 || public key),
in hex. Both live in the store folder, outside the database: someone who can rewrite the
database cannot sign with them unless they can also read that folder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from strata.core.errors import InvalidInput, NotFound, VerificationFailed
from strata.core.storage.files import fsync_dir

PRIVATE_KEY_FILE = "checkpoint.key"
PUBLIC_KEY_FILE = "checkpoint.pub"
ED25519 = b"\x01"  # the signature type byte of Ed25519 in signed notes
SIGNATURE_PREFIX = "— "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"


def key_id(name: str, public_key: bytes) -> bytes:
    """The four bytes that tag a signature line with the key that made it."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def check_name(name: str) -> str:
    """A key name (origin): non-empty, neither spaces nor '+' (they delimit the key files)."""
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise InvalidInput(f"invalid key name {name!r}: it must be non-empty, without spaces "
                           "or '+' (a schema-less URL such as strata.example/studio-1)")
    return name


def default_origin() -> str:
    """A name unique to this store, made once when its key is made."""
    return f"strata.local/{secrets.token_hex(8)}"


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what}: not standard base64") from None


@dataclass(frozen=True)
class Verifier:
    """A public key and its name: checks signature lines."""

    name: str
    public_key: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encoded(self) -> str:
        encoded = base64.b64encode(ED25519 + self.public_key).decode()
        return f"{self.name}+{self.id.hex()}+{encoded}"

    def verify(self, text: str, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature,
                                                                        text.encode())
        except InvalidSignature:
            return False
        return True

    @classmethod
    def parse(cls, encoded: str, source: str = "public key") -> Verifier:
        name, _, rest = encoded.strip().partition("+")
        hex_id, _, data = rest.partition("+")
        key = _b64decode(data, source)
        if len(hex_id) != 8 or key[:1] != ED25519 or len(key) != 33:
            raise InvalidInput(f"{source} is not an Ed25519 note verifier key "
                               "(<name>+<8 hex>+<base64 of 0x01 and 32 bytes>)")
        verifier = cls(check_name(name), key[1:])
        if verifier.id.hex() != hex_id.lower():
            raise InvalidInput(f"{source}: its key id {hex_id} does not match its key")
        return verifier


@dataclass(frozen=True)
class Signer:
    """A private key and its name: signs note texts."""

    name: str
    seed: bytes

    @property
    def verifier(self) -> Verifier:
        key = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return Verifier(self.name, _public_bytes(key))

    def encoded(self) -> str:
        encoded = base64.b64encode(ED25519 + self.seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier.id.hex()}+{encoded}"

    def sign(self, text: str) -> str:
        """`text` as a signed note: the text, a blank line, this key's signature line."""
        check_note_text(text)
        signature = Ed25519PrivateKey.from_private_bytes(self.seed).sign(text.encode())
        line = base64.b64encode(self.verifier.id + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {line}\n"

    @classmethod
    def parse(cls, encoded: str, source: str = "private key") -> Signer:
        if not encoded.startswith(_PRIVATE_PREFIX):
            raise InvalidInput(f"{source} is not a note signer key (PRIVATE+KEY+…)")
        name, _, rest = encoded[len(_PRIVATE_PREFIX):].strip().partition("+")
        hex_id, _, data = rest.partition("+")
        key = _b64decode(data, source)
        if key[:1] != ED25519 or len(key) != 33:
            raise InvalidInput(f"{source} is not an Ed25519 signer key")
        signer = cls(check_name(name), key[1:])
        if signer.verifier.id.hex() != hex_id.lower():
            raise InvalidInput(f"{source}: its key id {hex_id} does not match its key")
        return signer


def check_note_text(text: str) -> None:
    """A note text ends in a newline and holds no control character other than newline."""
    if not text.endswith("\n") or any(c < " " and c != "\n" for c in text):
        raise InvalidInput("a note text must end in a newline and hold no control characters")


@dataclass(frozen=True)
class SignatureLine:
    name: str
    key_id: bytes
    signature: bytes


def split_note(message: str, source: str) -> tuple[str, list[SignatureLine]]:
    """A signed note's text and its signature lines, unverified. The text ends at the last
    blank line (the text itself may hold blank lines)."""
    if not message.endswith("\n"):
        raise InvalidInput(f"{source} is not a signed note: it does not end in a newline")
    cut = message.rfind("\n\n")
    if cut < 0:
        raise InvalidInput(f"{source} is not a signed note: no blank line before signatures")
    text, block = message[:cut + 1], message[cut + 2:]
    check_note_text(text)
    lines = []
    for line in block.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            raise InvalidInput(f"{source}: {line[:40]!r} is not a signature line")
        name, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        raw = _b64decode(encoded, f"{source}: the signature of {name!r}")
        if len(raw) < 5:
            raise InvalidInput(f"{source}: the signature of {name!r} is too short")
        lines.append(SignatureLine(name, raw[:4], raw[4:]))
    if not lines:
        raise InvalidInput(f"{source} is not a signed note: it has no signature line")
    return text, lines


def open_note(message: str, verifier: Verifier, source: str) -> str:
    """The text of a signed note whose signature by `verifier` holds.

    As the spec says: signatures by other keys (another name or key id) are ignored, a
    signature by this key that fails rejects the note, and a note without one is refused.
    """
    text, lines = split_note(message, source)
    mine = [line for line in lines
            if line.name == verifier.name and line.key_id == verifier.id]
    if not mine:
        signers = ", ".join(sorted({line.name for line in lines}))
        raise VerificationFailed(
            f"{source} is not signed by the key {verifier.name}+{verifier.id.hex()} "
            f"(signed by: {signers})")
    for line in mine:
        if not verifier.verify(text, line.signature):
            raise VerificationFailed(
                f"{source}: its signature by {verifier.name} does not verify: the text was "
                "changed after it was signed, or the signature forged")
    return text


# --- the store's key files -------------------------------------------------------------------


def key_paths(home: Path) -> tuple[Path, Path]:
    return home / PRIVATE_KEY_FILE, home / PUBLIC_KEY_FILE


def write_new(path: Path, text: str, mode: int) -> None:
    """Write a new file with `mode`; refuse (FileExistsError) if it is there already."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may have narrowed or widened it
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def init_keys(home: Path, origin: str | None = None) -> Verifier:
    """Make the store's key pair, named `origin` (default: a new unique name), and its
    Content Credentials certificate; refuse to replace an existing key, whose checkpoints
    (and signed exports) would then no longer verify. A store whose key predates Content
    Credentials gets only the certificate, under the key's name."""
    # Lazily: the Content Credentials module reads provenance, which sits above the keys.
    from strata.core.interop.c2pa_credentials import credential_paths, make_credentials

    private, public = key_paths(home)
    credentials = credential_paths(home)
    if private.exists() and not any(path.exists() for path in credentials):
        # A key made before Content Credentials: add them under its name, keep the key.
        signer = load_signer(home)
        if origin and check_name(origin) != signer.name:
            raise InvalidInput(f"this store's key is named {signer.name!r}, not {origin!r}; "
                               "the certificate takes the key's name")
        make_credentials(home, signer.name)
        fsync_dir(home)
        return signer.verifier
    name = check_name(origin) if origin else default_origin()
    for path in (private, public, *credentials):
        if path.exists():
            raise InvalidInput(f"{path} exists: this store already has a key; checkpoints "
                               "signed with it would no longer verify if it were replaced")
    home.mkdir(parents=True, exist_ok=True)
    signer = Signer(name, Ed25519PrivateKey.generate().private_bytes_raw())
    try:
        write_new(private, signer.encoded() + "\n", 0o600)
    except FileExistsError:  # another `keys init` got there between the check and here
        raise InvalidInput(f"{private} exists: this store already has a key") from None
    write_new(public, signer.verifier.encoded() + "\n", 0o644)
    # The same name on the Content Credentials certificate (a local CA and the signing
    # certificate it issues), so an export's signer names the store whose log it comes from.
    make_credentials(home, name)
    fsync_dir(home)
    return signer.verifier


def load_signer(home: Path) -> Signer:
    private, _ = key_paths(home)
    try:
        mode = private.stat().st_mode
    except FileNotFoundError:
        raise NotFound(f"no signing key at {private}: run `strata keys init` first") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"{private} can be read by other users (mode "
                           f"{stat.S_IMODE(mode):o}); `chmod 600` it, and make a new key if "
                           "someone else may have read it")
    return Signer.parse(private.read_text(encoding="utf-8"), str(private))


def load_verifier(path: Path) -> Verifier:
    try:
        encoded = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no public key at {path}: run `strata keys init`, or pass --key "
                       "with the public key of the store that signed") from None
    return Verifier.parse(encoded, str(path))


def store_verifier(home: Path) -> Verifier:
    return load_verifier(key_paths(home)[1])
