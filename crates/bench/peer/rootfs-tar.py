"""Writes a rehearse image's rootfs as a tar stream on stdout for `podman import`.

The rootfs on disk is owned by a shifted UID range (the image's uid_base); the
tar carries the ownership the node sees (file UID - uid_base), so that the
imported image has root-owned /usr, _apt-owned apt caches and so on.

    python3 rootfs-tar.py ROOTFS UID_BASE | podman import - NAME
"""

import os
import sys
import tarfile


def main() -> None:
    root, base = sys.argv[1], int(sys.argv[2])

    def shift(info: tarfile.TarInfo) -> tarfile.TarInfo:
        for field in ("uid", "gid"):
            value = getattr(info, field)
            if value >= base:
                setattr(info, field, value - base)
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(root)):
            tar.add(os.path.join(root, entry), arcname=entry, filter=shift)


if __name__ == "__main__":
    main()
