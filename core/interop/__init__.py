"""Other tools' metadata in and out, and Content Credentials.

On import, the generation metadata that AUTOMATIC1111/Forge/SD.Next, ComfyUI, InvokeAI,
Fooocus, SwarmUI and NovelAI write into their files is read (`embedded.read_embedded`)
and recorded with the asset as a generation step made outside Strata: reconstructed
from the file, never verified, with the raw metadata kept verbatim beside it.
"""
