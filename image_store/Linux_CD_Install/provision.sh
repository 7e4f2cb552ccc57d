#!/bin/bash
# shellcheck source-path=SCRIPTDIR
#
# provision.sh of Linux_CD_Install: ConVirt's contract (-x -p -s -i -l -c) and the
# generic steps (disks, kernel and ramdisk, customization scripts) all come
# from common/provision; see there. Add image-specific steps by defining
# provision_steps before the call.

# shellcheck source=../common/provision
source "$(dirname -- "${BASH_SOURCE[0]}")/../common/provision"
provision_main "$@"
