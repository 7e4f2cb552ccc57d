#!/usr/bin/env python3
"""Load an image store the way ConVirt did, as a baseline for convirt's own loader.

For every image directory (minus image_store.conf's `excludes`), as ConVirt 2.1's
PyConfig and instantiate_config did:
  - exec image.conf and vm_conf.template with empty globals and locals;
  - keep the locals whose type is exactly str, int, float, list or dict (ConVirt dropped
    booleans, tuples, None and modules);
  - substitute image.conf's strings (and the str items of its lists) with
    string.Template.safe_substitute over the predefined variables, then the template's
    with the predefined variables and every image.conf key; $AUTOGEN_MAC is a fresh MAC at
    every occurrence, as ConVirt's fv_map called a function on each lookup.

Usage: convirt_py_load.py STORE   (prints the number of images and options loaded)
"""

import os
import random
import string
import sys

KEPT = (str, int, float, list, dict)


class FvMap(dict):
    """A dict whose callable values are called on every lookup (ConVirt's fv_map)."""

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        return value() if callable(value) else value


def random_mac():
    return "00:16:3e:%02x:%02x:%02x" % (
        random.randint(0x00, 0x7F),
        random.randint(0x00, 0xFF),
        random.randint(0x00, 0xFF),
    )


def read_conf(path):
    with open(path) as f:
        text = f.read().replace("\r\n", "\n")
    scope = {}
    exec(compile(text, path, "exec"), {}, scope)
    return {k: v for k, v in scope.items() if type(v) in KEPT}


def instantiate(options, mapping):
    out = {}
    for key, value in options.items():
        if type(value) is str:
            out[key] = string.Template(value).safe_substitute(mapping)
        elif type(value) is list:
            out[key] = [
                string.Template(v).safe_substitute(mapping) if type(v) is str else v
                for v in value
            ]
        else:
            out[key] = value
    return out


def main():
    store = sys.argv[1]
    excludes = ["common", "example", "custom_scripts"]
    conf = os.path.join(store, "image_store.conf")
    if os.path.exists(conf):
        excludes = read_conf(conf).get("excludes", excludes)
    images = options = 0
    for name in sorted(os.listdir(store)):
        path = os.path.join(store, name)
        if name in excludes or name.startswith(".") or not os.path.isdir(path):
            continue
        image_conf = read_conf(os.path.join(path, "image.conf"))
        vm_conf = read_conf(os.path.join(path, "vm_conf.template"))
        predefined = FvMap(
            IMAGE_STORE=store,
            IMAGE_NAME=name,
            IMAGE_LOCATION=name,
            VM_NAME="validate-vm",
            SERVER_NAME="localhost",
            DEFAULT_BRIDGE=image_conf.get("DEFAULT_BRIDGE", "xenbr0"),
            AUTOGEN_MAC=random_mac,
        )
        image_conf = instantiate(image_conf, predefined)
        vm_conf = instantiate(vm_conf, predefined)
        vm_conf = instantiate(vm_conf, image_conf)
        images += 1
        options += len(image_conf) + len(vm_conf)
    print("%d images, %d options" % (images, options))


if __name__ == "__main__":
    main()
