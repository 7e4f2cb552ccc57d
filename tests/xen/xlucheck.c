/*
 * xlucheck.c - syntax check of an xl domain config file with libxlutil,
 * the same parser `xl` uses.  Needs no hypervisor.
 *
 *   xlucheck FILE
 *
 * Parse errors are printed by libxlutil on stderr as "FILE:LINE: ...".
 * Every entry of `disk` is then run through xlu_disk_parse.
 * Exit status: 0 fine, 1 rejected, 2 usage error.
 *
 * Build: gcc -o xlucheck xlucheck.c -lxlutil -lxenlight
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <libxl.h>
#include <libxlutil.h>

int main(int argc, char **argv)
{
    const char *file;
    XLU_Config *cfg;
    XLU_ConfigList *disks;
    int ndisks = 0, i, rc, bad = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    file = argv[1];

    cfg = xlu_cfg_init(stderr, file);
    if (!cfg) {
        fprintf(stderr, "%s: xlu_cfg_init: out of memory\n", file);
        return 1;
    }

    /* Syntax errors are reported by libxlutil itself, with line numbers. */
    rc = xlu_cfg_readfile(cfg, file);
    if (rc) {
        fprintf(stderr, "%s: config rejected by libxlutil: %s\n",
                file, strerror(rc));
        xlu_cfg_destroy(cfg);
        return 1;
    }

    rc = xlu_cfg_get_list(cfg, "disk", &disks, &ndisks, 0);
    if (rc == ESRCH) {
        ndisks = 0;             /* no disk = ... line: nothing to check */
    } else if (rc) {
        /* libxlutil already printed "FILE:LINE: warning: ..." */
        fprintf(stderr, "%s: `disk' is not a list of strings: %s\n",
                file, strerror(rc));
        bad = 1;
        ndisks = 0;
    }

    for (i = 0; i < ndisks; i++) {
        const char *spec = xlu_cfg_get_listitem(disks, i);
        libxl_device_disk disk;

        if (!spec) {
            fprintf(stderr, "%s: disk[%d] is not a string\n", file, i);
            bad = 1;
            continue;
        }
        libxl_device_disk_init(&disk);
        /* Prints "xlu: ..." style diagnostics to the report stream. */
        rc = xlu_disk_parse(cfg, 1, &spec, &disk);
        if (rc) {
            fprintf(stderr, "%s: bad disk[%d] spec '%s': %s\n",
                    file, i, spec, strerror(rc));
            bad = 1;
        }
        libxl_device_disk_dispose(&disk);
    }

    xlu_cfg_destroy(cfg);
    return bad ? 1 : 0;
}
