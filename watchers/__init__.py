"""Watchers: folders that feed the ledger.

- `inbox`: every image, video or audio file that lands in a folder becomes an asset;
- `workspace`: checked-out assets edited by outside tools; each save is an editing step;
- `settle`: when a file is finished (the debounce both share); `files`: what they report.
"""
