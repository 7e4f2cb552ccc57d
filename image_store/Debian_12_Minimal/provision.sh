#!/bin/bash
# shellcheck source-path=SCRIPTDIR
#
# provision.sh of Debian_12_Minimal: ConVirt's contract (-x -p -s -i -l -c)
# comes from common/provision; the steps (cached mmdebstrap base, per-VM
# customisation of a staged /etc and /root, root disk without mounting,
# kernel and initrd next to the disk) from common/guest.

# shellcheck source=../common/provision
source "$(dirname -- "${BASH_SOURCE[0]}")/../common/provision"
# shellcheck source=../common/guest
source "$(dirname -- "${BASH_SOURCE[0]}")/../common/guest"

provision_steps() {
    # guest_type (image.conf) becomes the config's `type`: the kernel boots as PV or PVH.
    case "${guest_type:-pvh}" in
        pv | pvh) ;;
        *) die "guest_type must be 'pv' or 'pvh', not '${guest_type}'" ;;
    esac
    guest_provision_steps
}

provision_main "$@"
