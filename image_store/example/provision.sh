#!/bin/bash
# shellcheck source-path=SCRIPTDIR
#
# provision.sh: the generic provisioning script of the shipped images.
#
# Usage (this is how convirt, like ConVirt before it, runs it):
#   provision.sh -x VM_CONFIG -p ARGS_FILE -s STORE -i IMAGE -l LOG_FILE -c IMAGE_CONF
#
#   -x  the instantiated VM config (one `key = literal` line per key)
#   -p  bash-sourceable arguments (VM_NAME, IMAGE_NAME, IMAGE_LOCATION,
#       IMAGE_STORE)
#   -s  the image store holding common/ and the image directory
#   -i  the image directory name
#   -l  the log file
#   -c  the instantiated image.conf (optional)
#
# Steps: read image.conf, then the VM config (its keys win), then the
# arguments; create and fill the disks (provision_disks), fetch an installer
# kernel and ramdisk (fetch_kernel_and_ramdisk), run the customization
# scripts of custom_list (run_custom_scripts). Exit 0 when the VM is ready
# to start; any other status makes convirt remove what this run created.
#
# Copy it into a new image and add image-specific steps before the final
# log line; see common/functions for the helpers.

set -euo pipefail

vm_config=""
param_file=""
store=""
image_name=""
log_file=""
image_conf=""

usage() {
    printf 'usage: %s -x VM_CONFIG -p ARGS_FILE -s STORE -i IMAGE -l LOG_FILE [-c IMAGE_CONF]\n' \
        "${0##*/}" >&2
}

# die MESSAGE: log the error (once common/functions is loaded) and exit 1.
die() {
    if declare -F log_error > /dev/null; then
        log_error "$*"
    else
        printf 'ERROR: %s\n' "$*" >&2
    fi
    exit 1
}

parse_options() {
    local opt OPTIND=1
    while getopts ':x:p:s:i:l:c:' opt; do
        case "$opt" in
            x) vm_config=$OPTARG ;;
            p) param_file=$OPTARG ;;
            s) store=$OPTARG ;;
            i) image_name=$OPTARG ;;
            l) log_file=$OPTARG ;;
            c) image_conf=$OPTARG ;;
            :) usage && die "option -$OPTARG needs a value" ;;
            *) usage && die "unknown option -$OPTARG" ;;
        esac
    done
    shift $((OPTIND - 1))
    if (($# > 0)); then
        usage
        die "unexpected argument: $1"
    fi
    [[ -n "$store" ]] || die "-s STORE is required"
    [[ -n "$image_name" ]] || die "-i IMAGE is required"
    [[ -n "$vm_config" ]] || die "-x VM_CONFIG is required"
}

# read_configs: image.conf, then the VM config (its keys win).
read_configs() {
    if [[ -n "$image_conf" ]]; then
        source_python_config "$image_conf" || die "cannot read the image config $image_conf"
    fi
    source_python_config "$vm_config" || die "cannot read the VM config $vm_config"
}

parse_options "$@"

common_loc=$store/common
image_root=$store/$image_name
custom_loc=$store/custom_scripts
image_custom_loc=$image_root/custom_scripts

# shellcheck source=../common/defs
source "$common_loc/defs"
# shellcheck source=../common/functions
source "$common_loc/functions"

# Config keys must not redirect the script: these are fixed from here on.
readonly vm_config param_file store log_file image_conf
# custom_loc and image_custom_loc are the original ConVirt names, kept for
# image-specific steps added below.
# shellcheck disable=SC2034
readonly common_loc image_root custom_loc image_custom_loc

trap 'log_error "provisioning stopped: command failed at line $LINENO"' ERR

log_msg "Provisioning with image $image_name from $store"
log_msg "VM config $vm_config, image config ${image_conf:-(none)}, arguments ${param_file:-(none)}, log ${log_file:-(none)}"

read_configs
# The arguments file last, at the top level so that its assignments are
# global whatever form they take.
if [[ -n "$param_file" ]]; then
    [[ -r "$param_file" ]] || die "cannot read the arguments file $param_file"
    # shellcheck source=/dev/null
    source "$param_file"
fi
VM_NAME=${VM_NAME:-${CONVIRT_VM_NAME:-${name:-}}}
log_msg "VM name: ${VM_NAME:-(unknown)}"

provision_disks || die "disk provisioning failed"
fetch_kernel_and_ramdisk || die "fetching the kernel or ramdisk failed"
run_custom_scripts || die "customization failed"

log_msg "Provisioning of VM ${VM_NAME:-(unknown)} completed"
exit 0
